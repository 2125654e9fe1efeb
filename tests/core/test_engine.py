import copy
import json
import os
import signal

import pytest
import torch

from dlkit.core.config import TrainConfig
from dlkit.core.engine import build_optimizer, build_scheduler, fit
from dlkit.core.errors import ConfigError, Interrupted, TrainingStopped
from dlkit.core.reference import RegressionTask
from dlkit.core.run import Run


def train(path, task=None, **overrides):
    cfg = TrainConfig(output_dir=str(path), **{"batch_size": 32, "lr": 1e-2, "log_every": 1, **overrides})
    return fit(task or RegressionTask(), cfg, Run.create("core", cfg, "regression"))


def losses(path):
    return [r["loss"] for r in Run(path, "core").history("train")]


def test_learns_the_known_optimum(tmp_path):
    task = RegressionTask()
    metrics = train(tmp_path / "r", task, epochs=25, lr=3e-2, scheduler="cosine", warmup=0.05)
    assert metrics["val_loss"] < 2.5 * task.data.optimal_mse  # noise variance 0.01; the untrained MSE is ~8
    assert metrics["status"] == "finished" and metrics["epochs"] == 25


def test_run_folder_contents(tmp_path):
    metrics = train(tmp_path / "r", max_steps=12, eval_every=6, save_every=6)
    run = tmp_path / "r"
    for name in [
        "config.json",
        "history.jsonl",
        "metrics.csv",
        "metrics.json",
        "plots/loss.png",
        "checkpoints/final/model.safetensors",
    ]:
        assert (run / name).is_file(), name
    assert (run / "plots/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for key in [
        "trainable_params",
        "total_params",
        "trainable_pct",
        "train_seconds",
        "peak_memory_mb",
        "samples_per_second",
        "best",
        "final",
        "skipped_items",
    ]:
        assert key in metrics, key
    assert metrics["trainable_params"] == metrics["total_params"] == 8 * 32 + 32 + 32 + 1
    assert json.loads((run / "config.json").read_text())["_dlkit"]["group"] == "core"
    assert metrics["best"]["step"] in (6, 12) and metrics["final"]["step"] == 12


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    train(tmp_path / "big", max_steps=8, batch_size=32)
    train(tmp_path / "accum", max_steps=8, batch_size=16, grad_accum=2)
    torch.testing.assert_close(losses(tmp_path / "accum"), losses(tmp_path / "big"), rtol=1e-5, atol=1e-6)


def test_keep_last_prunes_old_checkpoints(tmp_path):
    train(tmp_path / "r", max_steps=20, save_every=4, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "r/checkpoints").iterdir())
    assert names == ["final", "step_0000016", "step_0000020"]


def test_early_stopping(tmp_path):
    # val_loss falls while training, so asking for "max" makes every eval after the first a non-improvement
    metrics = train(tmp_path / "r", epochs=50, eval_every=2, early_stop_patience=3, monitor_mode="max")
    assert metrics["steps"] == 8 and metrics["best"]["step"] == 2


def test_unknown_monitor_lists_the_metrics(tmp_path):
    with pytest.raises(ConfigError, match="--monitor val_acc is not an eval metric; choose one of val_loss"):
        train(tmp_path / "r", max_steps=2, eval_every=1, monitor="val_acc")


class NanAt(RegressionTask):
    def __init__(self, bad_calls):
        super().__init__()
        self.bad_calls, self.calls = set(bad_calls), 0

    def training_step(self, model, batch):
        self.calls += 1
        loss = super().training_step(model, batch)
        return loss * float("nan") if self.calls in self.bad_calls else loss


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(TrainingStopped, match="loss became nan at step 7 .*step_0000005"):
        train(tmp_path / "r", NanAt({7}), max_steps=10, save_every=5)
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["steps"] == 6


def test_nan_policy_skip_counts_and_goes_on(tmp_path):
    metrics = train(tmp_path / "r", NanAt({3, 5}), max_steps=10, nan_policy="skip")
    assert metrics["skipped_steps"] == 2 and metrics["steps"] == 10
    assert all(v == v for v in losses(tmp_path / "r"))  # no NaN reached the history


class CtrlCAt(RegressionTask):
    """Sends this process a real SIGINT from inside a training step, like a user pressing Ctrl-C."""

    def __init__(self, at_calls, dropout):
        super().__init__(dropout=dropout)
        self.at_calls, self.calls = set(at_calls), 0

    def training_step(self, model, batch):
        self.calls += 1
        if self.calls in self.at_calls:
            os.kill(os.getpid(), signal.SIGINT)
        return super().training_step(model, batch)


def test_ctrl_c_finishes_the_step_saves_and_resume_is_exact(tmp_path):
    common = {"max_steps": 12, "batch_size": 16, "grad_accum": 2, "save_every": 100}
    train(tmp_path / "whole", RegressionTask(dropout=0.3), **common)
    with pytest.raises(Interrupted, match=r"interrupted at step 5; checkpoint saved. Resume with: .*--resume") as err:
        train(tmp_path / "cut", CtrlCAt({9}, dropout=0.3), **common)  # 9th micro-batch: first half of step 5
    assert err.value.exit_code == 130
    assert json.loads((tmp_path / "cut/metrics.json").read_text())["status"] == "interrupted"
    assert Run(tmp_path / "cut", "core").checkpoints()[-1].name == "step_0000005"
    train(tmp_path / "cut", RegressionTask(dropout=0.3), resume=True, **common)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    with pytest.raises(Interrupted, match="stopped at once during step 3; no checkpoint was saved"):
        train(tmp_path / "r", CtrlCAt({5, 6}, dropout=0.0), max_steps=12, batch_size=16, grad_accum=2)
    assert not Run(tmp_path / "r", "core").checkpoints()


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    common = {"max_steps": 10, "save_every": 4, "keep_last": 3}
    train(tmp_path / "r", max_steps=8, save_every=4, keep_last=3)
    latest = tmp_path / "r/checkpoints/step_0000008/model.safetensors"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated
    train(tmp_path / "r", resume=True, **common)
    err = capsys.readouterr().err
    assert "step_0000008 is unreadable" in err and "resuming from step_0000004" in err
    assert [r["step"] for r in Run(tmp_path / "r", "core").history("train")] == list(range(1, 11))


@pytest.mark.parametrize(
    ("kind", "warmup", "expected"),
    [
        ("constant", 0.0, [1.0, 1.0, 1.0, 1.0]),
        ("linear", 0.0, [1.0, 0.75, 0.5, 0.25]),
        ("linear", 2, [0.5, 1.0, 1.0, 0.5]),
        ("cosine", 0.0, [1.0, 0.853553, 0.5, 0.146447]),
        ("step", 0.0, [1.0, 1.0, 0.5, 0.5]),
    ],
)
def test_schedules(kind, warmup, expected):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, TrainConfig(scheduler=kind, warmup=warmup, step_size=2, gamma=0.5), total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(expected, abs=1e-6)


def test_the_fused_adamw_takes_the_steps_of_the_plain_one():
    """The engine's AdamW is torch's fused kernel on CPU: the same updates as the for-loop AdamW, decay groups
    included (weight decay on >= 2-dim weights only)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 1))
    plain_model = copy.deepcopy(model)
    ours = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    decay = [p for p in plain_model.parameters() if p.dim() >= 2]
    no_decay = [p for p in plain_model.parameters() if p.dim() < 2]
    plain = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2, foreach=False
    )
    assert ours.defaults["fused"] and not plain.defaults["fused"]
    x = torch.randn(32, 8)
    for _ in range(5):
        for net, optimizer in ((model, ours), (plain_model, plain)):
            net(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for p, q in zip(model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_fp16_on_cpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train(tmp_path / "r", max_steps=1, precision="fp16")


def test_bf16_on_cpu_trains(tmp_path):
    metrics = train(tmp_path / "r", max_steps=5, precision="bf16")
    assert metrics["status"] == "finished"


class SlowStart(RegressionTask):
    """The first training step waits 1.5 s, as a first step's one-off costs (lazy inits, allocations) do."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def training_step(self, model, batch):
        import time

        self.calls += 1
        if self.calls == 1:
            time.sleep(1.5)
        return super().training_step(model, batch)


def test_throughput_is_steady_state_by_wall_and_cpu_time(tmp_path):
    metrics = train(tmp_path / "r", SlowStart(), max_steps=10, log_every=5, save_every=0, eval_every=0)
    assert metrics["steady_steps"] == 8  # the first 2 steps of the process are warm-up
    samples = 10 * 32
    whole_run = samples / metrics["train_seconds"]  # what samples_per_second used to be
    assert metrics["samples_per_second"] > 2 * whole_run
    assert metrics["samples_per_cpu_second"] > 0 and 0 < metrics["train_cpu_seconds"]
    train_lines = Run(tmp_path / "r", "core").history("train")
    assert [r["step"] for r in train_lines] == [5, 10]
    assert all(r["samples_per_second"] > 2 * whole_run and r["samples_per_cpu_second"] > 0 for r in train_lines)


def test_a_run_shorter_than_the_warm_up_reports_all_its_steps(tmp_path):
    metrics = train(tmp_path / "r", max_steps=2, log_every=1)
    assert metrics["steady_steps"] == 2 and metrics["samples_per_second"] > 0


def test_loss_png_is_not_redrawn_after_every_quick_evaluation(tmp_path, monkeypatch):
    from dlkit.core import plots

    drawn = []
    original = plots.loss_curves
    monkeypatch.setattr(plots, "loss_curves", lambda *a, **k: drawn.append(1) or original(*a, **k))
    train(tmp_path / "r", max_steps=6, eval_every=1, save_every=0)
    assert len(drawn) == 1 and (tmp_path / "r" / "plots" / "loss.png").is_file()  # the final one


class FrozenFirstLayer(RegressionTask):
    """The MLP with its first layer frozen (a "base"), whose weights come from `base_seed`, and dropout on."""

    def __init__(self, base_seed: int = 0):
        super().__init__(dropout=0.2)
        self.base_seed = base_seed

    def build_model(self):
        model = super().build_model()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        with torch.no_grad():
            first.weight.copy_(torch.randn(first.weight.shape, generator=torch.Generator().manual_seed(self.base_seed)))
        first.requires_grad_(False)
        return model


def test_a_checkpoint_holds_the_trained_tensors_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    common = {"max_steps": 10, "save_every": 5, "batch_size": 16, "scheduler": "constant"}
    train(tmp_path / "whole", FrozenFirstLayer(), **common)
    train(tmp_path / "cut", FrozenFirstLayer(), **{**common, "max_steps": 5})
    saved = load_file(str(tmp_path / "cut/checkpoints/step_0000005/model.safetensors"))
    model = FrozenFirstLayer().build_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == trainable and len(trainable) < len(list(model.parameters()))
    train(tmp_path / "cut", FrozenFirstLayer(), resume=True, **common)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_resume_on_other_frozen_weights_is_refused(tmp_path):
    train(tmp_path / "r", FrozenFirstLayer(base_seed=0), max_steps=4, save_every=4)
    with pytest.raises(
        ConfigError,
        match=r"^--resume: the frozen weights of builtin:mlp are not those .*step_0000004 "
        r"was trained on \(fingerprint \w+ vs \w+",
    ):
        train(tmp_path / "r", FrozenFirstLayer(base_seed=1), max_steps=8, save_every=4, resume=True)


class Bf16Regression(RegressionTask):
    """The MLP stored in bf16, as a checkpoint saved in bf16 loads; `frozen` freezes its first layer."""

    def __init__(self, frozen: bool):
        super().__init__()
        self.frozen = frozen

    def build_model(self):
        model = super().build_model().to(torch.bfloat16)
        if self.frozen:
            next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).requires_grad_(False)
        self.model = model
        return model


@pytest.mark.parametrize("precision", ["no", "bf16"])
@pytest.mark.parametrize("frozen", [False, True])
def test_a_bf16_model_trains_in_fp32(tmp_path, precision, frozen):
    """AdamW steps of 1e-5 are below bf16's spacing at these weights' size: trained in bf16 nearly every element
    would round back. Trainable parameters train in fp32; frozen ones keep bf16 under --precision bf16."""
    from accelerate.utils import set_seed

    task = Bf16Regression(frozen)
    set_seed(0)  # as fit seeds before build_model
    before = {n: p.detach().float().clone() for n, p in task.build_model().named_parameters()}
    train(tmp_path / "r", task, max_steps=10, lr=1e-5, precision=precision)
    for name, param in task.model.named_parameters():
        changed = (param.detach().float() != before[name]).float().mean().item()
        if param.requires_grad:
            assert param.dtype == torch.float32 and changed > 0.9, name
        else:
            assert changed == 0.0 and param.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
