"""Causal attention on the CPU in query blocks, so the keys a query may not see are never computed.

torch's CPU flash-attention kernel walks the keys in blocks of 512 and skips a block only when every key in it
lies in the future of every query of the tile, so below 512 keys a causal call costs as much as a full one:
half of the scores it computes are thrown away (`benchmarks/attention_blocks.py` shows causal and full calls
taking the same time). Here the queries go in blocks of BLOCK: block [s, e) attends to keys [0, e) only, with an
additive mask on its last BLOCK keys, which computes about (L + BLOCK) / 2L of the full score matrix. The same
two kernels do the work (forward, and backward from the saved output and log-sum-exp), so the result equals
`F.scaled_dot_product_attention(..., is_causal=True)` to float rounding, in value and gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK = 64
# Lengths where the blocks measured faster than one causal call (head sizes 16-128, one thread): from 256
# tokens, up to the kernel's own 512-key blocks, past which it already skips the future blocks itself.
MIN_LENGTH, MAX_LENGTH = 256, 512


def _kernels():
    ops = torch.ops.aten
    forward = getattr(ops, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(ops, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    return (forward, backward) if forward is not None and backward is not None else None


KERNELS = _kernels()


def _future_masks(length: int, dtype: torch.dtype, device: torch.device) -> list[Tensor]:
    """For each query block [s, e): a (e - s, e) additive mask, -inf where a key lies after its query."""
    masks = []
    for start in range(0, length, BLOCK):
        end = min(start + BLOCK, length)
        future = torch.ones(end - start, end, dtype=torch.bool, device=device).triu_(start + 1)
        masks.append(torch.zeros(end - start, end, dtype=dtype, device=device).masked_fill_(future, float("-inf")))
    return masks


class _BlockCausal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor:
        forward, _ = KERNELS
        batch, heads, length, _ = q.shape
        masks = _future_masks(length, q.dtype, q.device)
        # written as (B, L, H, D) so that the caller's transpose back to that layout costs no copy
        out = q.new_empty(batch, length, heads, v.shape[-1]).transpose(1, 2)
        lse = q.new_empty(batch, heads, length, dtype=torch.float32)
        for i, start in enumerate(range(0, length, BLOCK)):
            end = start + masks[i].shape[0]
            block_out, block_lse = forward(
                q[:, :, start:end], k[:, :, :end], v[:, :, :end], 0.0, False, attn_mask=masks[i], scale=scale
            )
            out[:, :, start:end] = block_out
            lse[:, :, start:end] = block_lse
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.masks, ctx.scale = masks, scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        _, backward = KERNELS
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for i, start in enumerate(range(0, q.shape[2], BLOCK)):
            end = start + ctx.masks[i].shape[0]
            gq, gk, gv = backward(
                grad[:, :, start:end],
                q[:, :, start:end],
                k[:, :, :end],
                v[:, :, :end],
                out[:, :, start:end],
                lse[:, :, start:end],
                0.0,
                False,
                attn_mask=ctx.masks[i],
                scale=ctx.scale,
            )
            dq[:, :, start:end] = gq
            dk[:, :, :end] += gk
            dv[:, :, :end] += gv
        return dq, dk, dv, None


def blockwise_applies(q: Tensor, k: Tensor) -> bool:
    """Whether causal self-attention on these shapes takes the query-block path."""
    return (
        KERNELS is not None
        and q.device.type == "cpu"
        and q.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_autocast_enabled("cpu")  # autocast picks sdpa's precision itself
        and q.shape[2] == k.shape[2]
        and MIN_LENGTH <= q.shape[2] <= MAX_LENGTH
    )


def causal_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """Causal self-attention, (B, H, L, D) in and out; key/value may have fewer heads (grouped queries)."""
    if blockwise_applies(q, k):
        return _BlockCausal.apply(q, k, v, scale)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=k.shape[1] != q.shape[1])
