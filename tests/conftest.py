"""Suite-wide settings: the Hub always looks offline (fast and deterministic, even on a machine with
internet), one torch thread per test process, plots render without a display, and `cli()` runs dlkit
in-process like a user would."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens on port 9: connection refused at once
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a small shared CPU: one intra-op thread per test process (pytest -n 2 runs two) is much
# faster than several threads fighting over the cores. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def train_each_method():
    """run(root, config_cls, train, settings, **fields): one run per method of `settings` (method -> (lr,
    accuracy threshold)) under `root`, every other field the same; returns method -> (run folder, final
    metrics). For the classifier groups' method comparisons."""

    def run(root, config_cls, train, settings: dict[str, tuple[float, float]], **fields) -> dict:
        runs = {}
        for method, (lr, _) in settings.items():
            cfg = config_cls(method=method, lr=lr, output_dir=str(root / method), **fields)
            runs[method] = (root / method, train(cfg))
        return runs

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `dlkit ARGS...` in this process; returns exit code, stdout and stderr."""
    from dlkit.cli import main

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke


@pytest.fixture
def big_batch_vs_accumulation():
    """check(task, eight_indices): the engine's step over one batch of 8 training examples and over two
    micro-batches of 4 give the same loss and gradients (rel 1e-5); the model runs in eval mode (no dropout).
    Returns the items `task.num_items` counted in the 8, for the caller to check against its own count."""

    def check(task, indices: list[int]) -> int:
        import torch

        from dlkit.core.config import TrainConfig
        from dlkit.core.engine import accumulate_step, build_accelerator

        accel = build_accelerator(TrainConfig())
        torch.manual_seed(0)
        model = task.build_model().eval()
        train_set, _ = task.datasets()

        def step(chunks):
            model.zero_grad(set_to_none=True)
            batches = [task.collate([train_set[i] for i in chunk]) for chunk in chunks]
            loss, _ = accumulate_step(task, model, accel, batches)
            grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            return loss.detach(), grads, sum(task.num_items(b) for b in batches)

        big_loss, big_grads, items = step([indices])
        loss, grads, accum_items = step([indices[:4], indices[4:]])
        assert items == accum_items and len(grads) == len(big_grads) > 0
        torch.testing.assert_close(loss, big_loss, rtol=1e-5, atol=0)
        for a, b in zip(grads, big_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        return items

    return check


@pytest.fixture
def cached_and_uncached(cli, tmp_path):
    """run(*args, steps=N) trains `dlkit *args` twice, as it is (frozen fronts are cached by default) and with
    --no-cache-features (a loss logged every step), and holds the cached run to the uncached one: it cached and the
    other did not, both logged N losses, and the losses and the final val_loss agree to 1e-5. Returns
    {"cached": Trained, "uncached": Trained} with each run's losses, metrics and stderr."""
    import json

    def train(name: str, *args: str) -> Trained:
        out = tmp_path / name
        result = cli(*args, "--log-every", "1", "--output-dir", out)
        assert result.exit_code == 0, result.stderr
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        return Trained(
            out,
            [r["loss"] for r in history if r["kind"] == "train"],
            json.loads((out / "metrics.json").read_text()),
            result.stderr,
        )

    def run(*args: str, steps: int) -> dict[str, Trained]:
        cached, uncached = train("cached", *args), train("uncached", *args, "--no-cache-features")
        assert cached.metrics["cached_features"] and not uncached.metrics["cached_features"]
        assert "runs once" in cached.stderr and "runs once" not in uncached.stderr
        assert len(cached.losses) == len(uncached.losses) == steps
        assert cached.losses == pytest.approx(uncached.losses, rel=1e-5, abs=1e-5)
        assert cached.metrics["val_loss"] == pytest.approx(uncached.metrics["val_loss"], rel=1e-5, abs=1e-5)
        return {"cached": cached, "uncached": uncached}

    return run


@dataclass
class Trained:
    dir: Path
    losses: list[float]
    metrics: dict
    stderr: str
