import json
import re
import shutil
from pathlib import Path

import pytest
from report_helpers import PERSIAN_ANSWER, PERSIAN_QUESTION
from report_page import assert_rtl, decode_png, parse_page

from dlkit.core.config import TrainConfig, saved_dict
from dlkit.core.overview import comparison_columns, read_rows


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    """The HTML report of the whole sweep folder, built through the CLI."""
    from dlkit.cli import main

    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(sweep), "-o", str(out), "--title", "Homework 3"]) == 0
    return out.read_text(encoding="utf-8")


def test_every_group_and_run_gets_its_sections(report):
    page = parse_page(report)
    assert page.headings[0] == "Homework 3"
    assert {"alpha", "beta"} <= set(page.headings)
    assert {"Run slow", "Run fast", "Run probe"} <= set(page.headings)
    assert page.headings.count("Comparison") == 2 and page.headings.count("Loss curves") == 2
    assert {"Figures", "Tables", "Results", "Samples", "Best and final evaluation (metrics.json)"} <= set(page.headings)
    assert {"alpha", "beta", "alpha-fast", "alpha-slow", "beta-probe"} <= page.ids  # the contents links land
    assert {link.lstrip("#") for link in page.links if link.startswith("#")} <= page.ids


def test_config_is_collapsed_and_shows_what_differs(report):
    page = parse_page(report)
    settings = len(saved_dict(TrainConfig()))  # 2 differ: lr, output_dir
    assert f"Effective config ({settings} settings, 2 differ between the runs)" in page.details_summaries
    config = re.search(r"<details class=\"config\">.*?</details>", report, re.S).group()
    assert '<details class="config"><summary>' in config and " open" not in config.split(">")[0]
    highlighted = parse_page(config).highlighted_rows
    assert ["lr", "0.03", "0.001"] in highlighted and [row[0] for row in highlighted] == ["output_dir", "lr"]


def test_comparison_has_the_columns_of_dlkit_compare(report, sweep):
    rows, _ = read_rows([sweep / "alpha" / "slow", sweep / "alpha" / "fast"])
    table = report.split("<h3>Comparison</h3>")[1].split("</table>")[0]
    for column in comparison_columns(rows):
        if column != "run":  # shown as the run's name, heading each column
            assert f"<td>{column.replace('_', '_<wbr>')}</td>" in table or f">{column}<" in table, column


def test_images_are_embedded_pngs_and_nothing_is_fetched(report):
    page = parse_page(report)
    # loss curves x2, params.png, confusion matrix, samples/grid.png, 2 thumbnails from misclassified.csv (its
    # third image is missing) and 1 from captions.jsonl; the runs' own loss.png is replaced by the overlaid curves
    assert len(page.images) == 8
    sizes = [decode_png(src) for src in page.images]
    assert (24, 16) in sizes
    assert (160, 160) in sizes and (160, 100) in sizes  # the JPEG too, as a PNG thumbnail
    assert "true: square, predicted: circle, confidence: 0.61" in report
    assert "generated: a red rectangle, references: [&quot;a red box&quot;, &quot;a rectangle&quot;]" in report
    assert page.scripts == 0
    assert not [link for link in page.links if not link.startswith(("#", "data:image/png;base64,"))]
    assert "http://" not in report and "https://" not in report and "@import" not in report
    assert "@media print" in report


def test_persian_text_reads_right_to_left(report):
    page = parse_page(report)
    assert_rtl(page, PERSIAN_QUESTION)
    assert_rtl(page, PERSIAN_ANSWER)
    assert "What is 2+2?" not in "".join(page.rtl_text)


def test_tables_from_csv_json_and_jsonl(report):
    page = parse_page(report)
    assert "eval/per_class.csv (sorted by F1; the worst class highlighted)" in report
    per_class = report.split("eval/per_class.csv")[1].split("</table>")[0]
    classes = re.findall(r"<tr[^>]*><td>(circle|square|triangle|macro avg|weighted avg|accuracy)</td>", per_class)
    assert classes[-3:] == ["macro avg", "weighted avg", "accuracy"]
    worst = [row for row in page.highlighted_rows if row and row[0] in ("circle", "square", "triangle")]
    assert len(worst) == 1 and worst[0][0] == classes[2]  # the lowest F1, last of the classes
    f1 = [
        float(v)
        for v in re.findall(
            r"<tr[^>]*><td>(?:circle|square|triangle)</td>"
            r"<td[^>]*>[^<]*</td><td[^>]*>[^<]*</td><td[^>]*>([^<]*)</td>",
            per_class,
        )
    ]
    assert f1 == sorted(f1, reverse=True)
    assert "test_bleu4" in report and "0.3125" in report  # eval.json
    assert "2+2 is 5" in report and "a blue square" in report  # jsonl records and text samples
    assert "the same answers as" not in report  # samples/x.md beside samples/x.jsonl repeats it
    assert "prepared row" not in report and "vocabulary entry" not in report


def test_corrupt_metrics_is_listed_and_the_others_reported(cli, sweep, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sweep / "alpha", runs / "alpha", ignore=shutil.ignore_patterns("checkpoints"))
    (runs / "alpha" / "slow" / "metrics.json").write_text('{"val_loss": 0.5,')
    result = cli("report", runs, "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.stderr
    assert "slow/metrics.json is corrupt" in result.stderr and result.stderr.count("\n") == 1
    page = parse_page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "Runs that could not be read" in page.headings
    assert "Run fast" in page.headings and "Run slow" not in page.headings


def test_json_output_and_default_name(cli, sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("--json", "report", sweep / "beta" / "probe")
    assert result.exit_code == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["report"] == "report.html" and written["groups"] == {"beta": 1} and written["broken"] == []
    assert Path("report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_run_without_metrics_yet_is_reported(cli, sweep, tmp_path):
    run = tmp_path / "unfinished"
    shutil.copytree(sweep / "alpha" / "slow", run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "metrics.json").unlink()  # still training, or killed before the end
    result = cli("report", run, "-o", tmp_path / "r.html", "--title", "گزارش تمرین ۳")
    assert result.exit_code == 0, result.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    page = parse_page(html)
    assert "Run unfinished" in page.headings and "Loss curves" in page.headings
    assert '<h1 dir="rtl">گزارش تمرین ۳</h1>' in html
