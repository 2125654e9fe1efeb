"""The report over real tiny runs of three groups, each made here with the group's own train command."""

import re

import pytest
from report_page import decode_png, parse_page
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlkit.core.run import Run
from dlkit.report.build import report_hook

TRAIN = {
    "charrnn": [
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--hidden-size",
        "16",
        "--num-layers",
        "1",
        "--batch-size",
        "8",
        "--block-size",
        "16",
        "--sample-chars",
        "40",
        "--report-to",
        "tensorboard",
    ],
    "vit": [
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "8",
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "16",
    ],
    "llm": [
        "--data",
        "builtin:instruct-fa",
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "4",
        "--limit",
        "40",
        "--max-new-tokens",
        "8",
        "--max-length",
        "64",
    ],
}


@pytest.fixture(scope="module")
def group_runs(tmp_path_factory):
    from dlkit.cli import main

    root = tmp_path_factory.mktemp("groups")
    for group, args in TRAIN.items():
        code = main(["-q", group, "train", "--output-dir", str(root / group), "--log-every", "1", *args])
        assert code == 0, f"dlkit {group} train failed"
    assert main(["-q", "vit", "eval", "--run", str(root / "vit")]) == 0
    return root


def test_report_over_three_groups(cli, group_runs, tmp_path):
    result = cli("report", *(group_runs / g for g in TRAIN), "-o", tmp_path / "report.html")
    assert result.exit_code == 0, result.stderr
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = parse_page(html)
    for group in TRAIN:
        start = page.headings.index(group)
        assert page.headings[start + 1 : start + 4] == ["Comparison", "Loss curves", f"Run {group}"], group
    assert len([s for s in page.details_summaries if s.startswith("Effective config")]) == 3
    images = [decode_png(src) for src in page.images]
    assert len(images) >= 3 + 1 + 1  # loss curves per group, charrnn's val_bpc, vit's confusion matrix
    assert not [link for link in page.links if not link.startswith(("#", "data:image/png;base64,"))]
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://|url\(\s*["']?https?://""", html)
    assert page.scripts == 0
    sample = sorted((group_runs / "llm" / "samples").glob("*.md"))[-1].read_text(encoding="utf-8")
    persian = re.findall(r"[\u0600-\u06ff][\u0600-\u06ff ]*[\u0600-\u06ff]", sample)
    assert persian and all(words in "".join(page.rtl_text) for words in persian)
    if report_hook("vit") is None:  # the generic sections show vit eval's per-class report
        assert "eval/per_class.csv (sorted by F1; the worst class highlighted)" in html
        assert "samples/misclassified.csv" in html and page.highlighted_rows


def test_report_to_tensorboard_on_a_group_train_command(group_runs):
    run = Run.open(group_runs / "charrnn")
    events = EventAccumulator(str(run.dir / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in run.history("train")]
    assert "eval/val_bpc" in events.Tags()["scalars"]
