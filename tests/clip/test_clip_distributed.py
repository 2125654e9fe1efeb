"""`clip train` on several processes contrasts each caption with the images of the whole global batch:
2 processes x 4 examples give the loss and the gradients of 1 process x 8 (open_clip's gathered loss)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clip_helpers import tiny_clip_and_batch

from dlkit.clip.task import ClipTask
from dlkit.core.config import TrainConfig
from dlkit.core.engine import split_step, step_plan

SCRIPT = Path(__file__).with_name("clip_ddp_step.py")


def symmetric_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's loss written out: image i's caption is caption i, both ways."""
    sims = scale * image_emb @ text_emb.T
    target = torch.arange(len(sims))
    return (F.cross_entropy(sims, target) + F.cross_entropy(sims.T, target)) / 2


@pytest.mark.distributed
def test_two_processes_give_the_loss_and_gradients_of_one_with_the_whole_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)

    model, images, tokens = tiny_clip_and_batch(8)
    image_emb, text_emb, scale = model(images, tokens)
    scale = scale.clamp(max=100.0)
    whole = symmetric_loss(image_emb, text_emb, scale)
    whole.backward()
    assert sum(ddp["losses"]) / 2 == pytest.approx(whole.item(), rel=1e-5)
    for name, param in model.named_parameters():  # each tensor within 1e-5 of its largest entry (float32 sums)
        assert (ddp["grads"][name] - param.grad).abs().max() <= 1e-5 * param.grad.abs().max(), name

    # what each process alone would see (its 4 examples as the only negatives) is a different loss
    alone = [symmetric_loss(image_emb[h], text_emb[h], scale).item() for h in (slice(0, 4), slice(4, 8))]
    assert sum(alone) / 2 < whole.item() - 0.05


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 1), (2, 2), (3, 2)])
def test_every_micro_batch_of_every_step_is_full_on_every_process(world, accum):
    cfg = TrainConfig(batch_size=4, grad_accum=accum, seed=3)
    task = ClipTask.__new__(ClipTask)  # batch_plan needs no model
    for epoch in range(2):
        plan = step_plan(task, range(101), cfg, epoch, world)
        assert len(plan) == 101 // (4 * accum * world)  # the short last step is dropped
        seen = []
        for step in plan:
            parts = split_step(step, world, accum, 4)
            assert [[len(b) for b in micro] for micro in parts] == [[4] * accum] * world
            seen += [i for micro in parts for b in micro for i in b]
        assert len(seen) == len(set(seen))


def test_a_set_smaller_than_one_step_is_one_short_batch_on_one_process_and_none_on_several(monkeypatch):
    import dlkit.clip.task as clip_task

    task = ClipTask.__new__(ClipTask)
    cfg = TrainConfig(batch_size=4, grad_accum=2)
    plan = step_plan(task, range(6), cfg, 0, 1)
    assert len(plan) == 1 and sorted(plan[0]) == list(range(6))
    monkeypatch.setattr(clip_task, "world_size", lambda: 2)  # a short step could split unequally: none at all
    assert step_plan(task, range(6), cfg, 0, 2) == []
