import re

from PIL import Image
from report_helpers import PERSIAN_ANSWER, PERSIAN_QUESTION


def test_markdown_report_with_its_images_folder(cli, sweep, tmp_path):
    result = cli("report", sweep, "-o", tmp_path / "hw.md", "--title", "Homework 3")
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "hw.md").read_text(encoding="utf-8")
    assert text.startswith("# Homework 3\n")
    for heading in ["## alpha", "## beta", "### Comparison", "### Loss curves", "### Run fast", "### Run probe",
                    "#### Figures", "#### Tables", "#### Samples"]:
        assert f"\n{heading}\n" in text, heading
    assert "<details><summary>Effective config" in text
    links = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", text)  # alt text may hold escaped brackets
    assert len(links) == 8 and all(link.startswith("hw_images/") for link in links)
    for link in links:
        with Image.open(tmp_path / link) as image:
            assert image.format == "PNG"
    assert sorted(p.name for p in (tmp_path / "hw_images").iterdir()) == sorted(link.split("/")[1] for link in links)
    rtl_blocks = "".join(re.findall(r"<(?:div|span) dir=\"rtl\">(.*?)</(?:div|span)>", text))
    assert PERSIAN_QUESTION in rtl_blocks and PERSIAN_ANSWER in rtl_blocks
    assert "http://" not in text and "https://" not in text


def test_format_flag_wins_over_the_suffix(cli, sweep, tmp_path):
    result = cli("report", sweep / "beta", "-o", tmp_path / "out.txt", "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").startswith("# dlkit report")
    assert (tmp_path / "out_images").is_dir()
