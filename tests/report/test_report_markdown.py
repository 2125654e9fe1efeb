import re

from PIL import Image
from report_helpers import PERSIAN_ANSWER, PERSIAN_QUESTION


def test_markdown_report_with_its_images_folder(cli, sweep, tmp_path):
    result = cli("report", sweep, "-o", tmp_path / "hw.md", "--title", "Homework 3")
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "hw.md").read_text(encoding="utf-8")
    assert text.startswith("# Homework 3\n")
    for heading in [
        "## alpha",
        "## beta",
        "### Comparison",
        "### Loss curves",
        "### Run fast",
        "### Run probe",
        "#### Figures",
        "#### Tables",
        "#### Samples",
    ]:
        assert f"\n{heading}\n" in text, heading
    assert "<details><summary>Effective config" in text
    links = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", text)  # alt text may hold escaped brackets
    assert len(links) == 8 and all(link.startswith("hw_images/") for link in links)
    for link in links:
        with Image.open(tmp_path / link) as image:
            assert image.format == "PNG"
    assert sorted(p.name for p in (tmp_path / "hw_images").iterdir() if not p.name.startswith(".")) == sorted(
        link.split("/")[1] for link in links
    )  # and the folder's dlkit marker
    rtl_blocks = "".join(re.findall(r"<(?:div|span) dir=\"rtl\">(.*?)</(?:div|span)>", text))
    assert PERSIAN_QUESTION in rtl_blocks and PERSIAN_ANSWER in rtl_blocks
    assert "http://" not in text and "https://" not in text


def test_format_flag_wins_over_the_suffix(cli, sweep, tmp_path):
    result = cli("report", sweep / "beta", "-o", tmp_path / "out.txt", "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").startswith("# dlkit report")
    assert (tmp_path / "out_images").is_dir()


def test_an_earlier_report_is_replaced_only_with_overwrite_and_a_users_images_folder_never(cli, sweep, tmp_path):
    from checks import one_line_error

    assert cli("report", sweep / "beta", "-o", tmp_path / "r.md").exit_code == 0
    one_line_error(cli("report", sweep / "beta", "-o", tmp_path / "r.md"), "already exists; pass --overwrite")
    assert cli("report", sweep / "beta", "-o", tmp_path / "r.md", "--overwrite").exit_code == 0
    (tmp_path / "notes.md").write_text("my notes")
    one_line_error(
        cli("report", sweep / "beta", "-o", tmp_path / "notes.md", "--overwrite"), "exists and was not written by dlkit"
    )
    (tmp_path / "mine_images").mkdir()
    (tmp_path / "mine_images" / "photo.png").write_bytes(b"mine")
    one_line_error(
        cli("report", sweep / "beta", "-o", tmp_path / "mine.md", "--overwrite"),
        "holds files dlkit did not write (photo.png)",
    )
    assert (tmp_path / "notes.md").read_text() == "my notes"
    assert (tmp_path / "mine_images" / "photo.png").read_bytes() == b"mine"
