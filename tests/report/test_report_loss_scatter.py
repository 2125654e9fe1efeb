"""`dlkit report --loss-scatter`: every logged batch loss of history.jsonl as a point."""

from __future__ import annotations

from report_helpers import regression_run

from dlkit.core.plots import loss_scatter
from dlkit.core.run import Run


def test_loss_scatter_draws_each_logged_batch(tmp_path, cli, monkeypatch):
    run_dir = regression_run(tmp_path / "runs", "alpha", "perbatch", 1e-2)
    history = Run.open(run_dir).history()
    assert sum(1 for r in history if r.get("kind") == "train") == 6  # --log-every 1: one line per batch

    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "scatter",
        lambda self, x, y, **kw: drawn.append((list(x), list(y))) or original(self, x, y, **kw),
    )
    result = cli("report", tmp_path / "runs", "-o", tmp_path / "report.html", "--loss-scatter")
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "plots" / "loss_scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn == [
        (
            [r["step"] for r in history if r.get("kind") == "train"],
            [r["loss"] for r in history if r.get("kind") == "train"],
        )
    ]
    assert "loss_scatter" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert loss_scatter([{"kind": "eval", "val_loss": 1.0, "step": 1}], tmp_path / "none.png") is None
