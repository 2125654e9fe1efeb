"""The engine's contract: item-weighted accumulation, the divergence stop, checked resume, the Task hooks,
and the Accelerate shims."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from regression_run import ItemsTask

from dlkit.core import engine
from dlkit.core.config import TrainConfig
from dlkit.core.engine import fit
from dlkit.core.errors import ConfigError, Diverged, RunError, TrainingStopped
from dlkit.core.reference import RegressionTask
from dlkit.core.run import Run
from dlkit.core.task import Task

SCRIPT = Path(__file__).with_name("regression_run.py")


def train(path, task=None, **overrides):
    cfg = TrainConfig(output_dir=str(path), **{"batch_size": 8, "lr": 1e-2, "log_every": 1, **overrides})
    return fit(task or RegressionTask(), cfg, Run.create("core", cfg, "regression"))


def train_losses(path):
    return [r["loss"] for r in Run(path, "core").history("train")]


@pytest.fixture
def gradients():
    """The flattened gradients every optimizer step sees, in order."""
    seen = []

    def hook(optimizer, args, kwargs):
        seen.append(
            torch.cat(
                [p.grad.flatten() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            ).clone()
        )

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(hook)
    yield seen
    handle.remove()


def test_accumulated_steps_have_the_gradients_of_one_big_batch(tmp_path, gradients):
    common = {"max_steps": 4, "max_grad_norm": 0.0}
    train(tmp_path / "big", ItemsTask(), batch_size=8, **common)
    big = list(gradients)
    gradients.clear()
    train(tmp_path / "accum", ItemsTask(), batch_size=4, grad_accum=2, **common)
    assert len(big) == len(gradients) == 4
    for a, b in zip(gradients, big, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(train_losses(tmp_path / "accum"), train_losses(tmp_path / "big"), rtol=1e-5, atol=0)


def test_the_step_loss_is_the_item_weighted_mean(tmp_path):
    """Micro-batches of 1 and 5 items: the step loss weights them 1:5, not 1:1."""
    task = ItemsTask()
    train_set, _ = task.datasets()
    model = task.build_model()
    accel = engine.build_accelerator(TrainConfig())
    batches = [task.collate([train_set[i] for i in idx]) for idx in ([0, 1], [2, 3, 4])]
    step_loss, _ = engine.accumulate_step(task, model, accel, batches)
    whole = task.collate([train_set[i] for i in range(5)])
    with torch.no_grad():
        expected = task.training_step(model, whole)
    assert [task.num_items(b) for b in batches] != [2, 3]  # items, not examples
    assert step_loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_split_step_keeps_processes_in_step():
    assert engine.split_step(list(range(8)), 2, 1, 4) == [[[0, 1, 2, 3]], [[4, 5, 6, 7]]]
    assert engine.split_step(list(range(8)), 1, 2, 4) == [[[0, 1, 2, 3], [4, 5, 6, 7]]]
    assert engine.split_step(list(range(5)), 2, 2, 4) == [[[0, 1, 2]], [[3, 4]]]  # a short last step
    assert engine.split_step([7], 2, 1, 4) == []  # fewer examples than processes: dropped


@pytest.mark.slow
def test_two_processes_of_four_equal_one_process_of_eight(tmp_path):
    args = ["--items", "--max-steps", "4", "--log-every", "1", "--max-grad-norm", "0", "--save-every", "100"]
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(SCRIPT),
            "--output-dir",
            str(tmp_path / "two"),
            "--batch-size",
            "4",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "one"), "--batch-size", "8", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    torch.testing.assert_close(train_losses(tmp_path / "two"), train_losses(tmp_path / "one"), rtol=1e-5, atol=0)
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / name / "checkpoints/final/model.safetensors")) for name in ("two", "one"))
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


# -- divergence ------------------------------------------------------------------------------------


def test_a_diverging_loss_stops_the_run(tmp_path):
    # step 1's update already wrecks the weights: step_0000001 holds them, so no checkpoint is good
    with pytest.raises(
        Diverged,
        match=r"diverged at step 2: smoothed loss .* > 10 x its best .*; training stopped "
        r"and no good checkpoint: the weights went bad at step 1;",
    ):
        train(tmp_path / "r", max_steps=40, lr=30.0, optimizer="sgd", max_grad_norm=0.0, save_every=1)
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["steps"] == 1 and metrics["diverged"]["step"] == 2
    assert metrics["diverged"]["loss"] > 10 * metrics["diverged"]["best_smoothed_loss"] > 0
    assert Run(tmp_path / "r", "core").checkpoints()[-1].name == "step_0000001"
    assert not (tmp_path / "r/checkpoints/final").exists()
    with pytest.raises(RunError, match="no readable checkpoint with good weights"):
        train(tmp_path / "r", max_steps=40, lr=30.0, optimizer="sgd", max_grad_norm=0.0, save_every=1, resume=True)


class BlowUpAt(RegressionTask):
    """Step `step`'s loss is ordinary but its gradient is `scale` x too large, so the weights it leaves are bad
    and the loss of the step after it diverges (or overflows): the checkpoint of `step` holds bad weights, the
    one before is good."""

    def __init__(self, step, scale):
        super().__init__()
        self.step, self.scale, self.calls = step, scale, 0

    def training_step(self, model, batch):
        self.calls += 1
        loss = super().training_step(model, batch)
        return loss + self.scale * (loss - loss.detach()) if self.calls == self.step else loss


@pytest.mark.parametrize(("scale", "message"), [(1e8, "diverged at step 6"), (1e30, "loss became inf at step 6")])
def test_the_named_checkpoint_is_the_newest_good_one_and_keep_last_keeps_it(tmp_path, scale, message):
    with pytest.raises(TrainingStopped, match=message) as err:
        train(
            tmp_path / "r",
            BlowUpAt(5, scale),
            max_steps=40,
            optimizer="sgd",
            max_grad_norm=0.0,
            save_every=1,
            keep_last=1,
        )
    assert "the newest good checkpoint is " + str(tmp_path / "r/checkpoints/step_0000004") in str(err.value)
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert metrics["status"] == "diverged"
    kept = [c.name for c in Run(tmp_path / "r", "core").checkpoints()]
    assert kept == ["step_0000004", "step_0000005"]  # --keep-last 1, yet the good one was not deleted
    from safetensors.torch import load_file

    def val_mse(step):
        model = RegressionTask().build_model()
        model.load_state_dict(load_file(str(tmp_path / f"r/checkpoints/step_{step:07d}/model.safetensors")))
        x, y = RegressionTask().data.val.tensors
        return torch.nn.functional.mse_loss(model(x).squeeze(-1), y).item()

    before = max(train_losses(tmp_path / "r")[:5])  # the losses up to the last step that passed the guards
    assert val_mse(4) < 2 * before and not val_mse(5) < 1000 * before
    # resuming skips the checkpoint whose weights went bad
    resumed = train(
        tmp_path / "r", max_steps=6, optimizer="sgd", max_grad_norm=0.0, save_every=1, keep_last=1, resume=True
    )
    assert resumed["status"] == "finished" and [r["step"] for r in Run(tmp_path / "r", "core").history("train")] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


def test_divergence_factor_zero_turns_the_check_off(tmp_path):
    with pytest.raises(Exception) as err:  # the loss overflows to inf: the non-finite guard fires instead
        train(tmp_path / "r", max_steps=40, lr=30.0, optimizer="sgd", max_grad_norm=0.0, divergence_factor=0.0)
    assert not isinstance(err.value, Diverged) and "loss became" in str(err.value)


# -- resume ----------------------------------------------------------------------------------------


def test_resume_refuses_a_changed_batch_plan_naming_each_key(tmp_path):
    train(tmp_path / "r", max_steps=4, save_every=2)
    with pytest.raises(ConfigError) as err:
        train(tmp_path / "r", max_steps=4, resume=True, batch_size=16, seed=3)
    message = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in message
    assert "batch-size 8 -> 16" in message and "seed 0 -> 3" in message


def test_resume_refuses_changed_training_data(tmp_path):
    train(tmp_path / "r", ItemsTask(), max_steps=4, save_every=2)

    class Fewer(ItemsTask):
        def datasets(self):
            train_set, val = super().datasets()
            return torch.utils.data.Subset(train_set, range(100)), val

    with pytest.raises(ConfigError, match=r"data train-examples 512 -> 100"):
        train(tmp_path / "r", Fewer(), max_steps=4, resume=True)


def test_resume_with_more_steps_goes_on_and_is_recorded(tmp_path):
    train(tmp_path / "r", max_steps=4, save_every=2)
    metrics = train(tmp_path / "r", max_steps=6, save_every=3, resume=True)
    assert metrics["steps"] == 6 and metrics["status"] == "finished"
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["max_steps"] == 6 and config["save_every"] == 3
    [entry] = config["_dlkit"]["history"]
    assert entry["resumed_at_step"] == 4
    assert entry["changed"] == {"max_steps": {"old": 4, "new": 6}, "save_every": {"old": 2, "new": 3}}


# -- the Task contract ------------------------------------------------------------------------------


def test_a_misspelled_hook_is_refused(tmp_path):
    class Typo(RegressionTask):
        def on_evals(self, model, run, step):
            pass

    with pytest.raises(TypeError, match="Typo.on_evals is not a Task hook .* did you mean on_eval"):
        train(tmp_path / "r", Typo(), max_steps=1)


def test_fit_needs_a_task(tmp_path):
    class Plain:
        pass

    with pytest.raises(TypeError, match="Plain does not subclass it"):
        train(tmp_path / "r", Plain(), max_steps=1)
    with pytest.raises(TypeError, match="abstract"):
        type("Incomplete", (Task,), {})()


# -- command line and Accelerate shims ----------------------------------------------------------------


def test_the_cli_passes_its_command_line_in(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--output-dir", str(out), "--max-steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    command = json.loads((out / "config.json").read_text())["_dlkit"]["command"]
    assert command == f"dlkit train --output-dir {out} --max-steps 2"


def test_lomo_lookup_is_cached_only_on_known_accelerate(monkeypatch):
    import accelerate
    import accelerate.optimizer

    original = getattr(accelerate.optimizer.is_lomo_available, "__wrapped__", accelerate.optimizer.is_lomo_available)
    monkeypatch.setattr(accelerate.optimizer, "is_lomo_available", original)
    monkeypatch.setattr(accelerate, "__version__", "9.0.0")
    engine._cache_lomo_lookup()
    assert accelerate.optimizer.is_lomo_available is original
    monkeypatch.setattr(accelerate, "__version__", "1.15.0")
    engine._cache_lomo_lookup()
    assert accelerate.optimizer.is_lomo_available.__wrapped__ is original
    assert accelerate.optimizer.is_lomo_available() == original()


def test_a_second_fit_may_change_precision(tmp_path, monkeypatch):
    assert train(tmp_path / "a", max_steps=1, precision="bf16")["status"] == "finished"
    assert train(tmp_path / "b", max_steps=1, precision="no")["status"] == "finished"
    import accelerate

    monkeypatch.setattr(accelerate, "__version__", "9.0.0")  # a version whose private state is unknown
    with pytest.raises(ConfigError, match="cannot change the precision within one process"):
        train(tmp_path / "c", max_steps=1, precision="bf16")
