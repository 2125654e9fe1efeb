"""One contrastive step of `clip train` on this process's half of a fixed batch, under DDP; run by
test_clip_distributed.py:

    torchrun --standalone --nproc_per_node 2 tests/clip/clip_ddp_step.py OUT.pt

Writes every process's loss and the gradients DDP averaged (the same on every process) to OUT.pt.
"""

import sys

import torch
import torch.distributed as dist
from clip_helpers import tiny_clip_and_batch
from torch.nn.parallel import DistributedDataParallel

from dlkit.clip.task import contrastive_loss

PER_PROCESS = 4

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
model, images, tokens = tiny_clip_and_batch(PER_PROCESS * world)
ddp = DistributedDataParallel(model)
mine = slice(rank * PER_PROCESS, (rank + 1) * PER_PROCESS)  # the engine's plan gives rank r the r-th batch
image_emb, text_emb, scale = ddp(images[mine], tokens[mine])
loss = contrastive_loss(image_emb, text_emb, scale.clamp(max=100.0))
loss.backward()
losses = [None] * world
dist.all_gather_object(losses, loss.item())
if rank == 0:
    torch.save({"losses": losses, "grads": {n: p.grad for n, p in model.named_parameters()}}, sys.argv[1])
dist.destroy_process_group()
