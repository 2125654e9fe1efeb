"""Cross-entropy of a linear head, computed in chunks of rows so the (tokens x vocab) logits never exist at once.

With a 256k vocabulary (Gemma-2) the logits of a fine-tuning batch are its largest tensor: 1,000 labelled
tokens make a 1 GB float32 matrix, and the plain path keeps several of that size alive (logits, soft-capped
logits, log-softmax, and their gradients). Here each chunk of rows is projected, scored and differentiated
while it is in memory: the gradients for the head's input (and weight, when it trains) are accumulated in the
forward pass, so the backward pass only scales them and nothing is recomputed.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ELEMENTS = 2**23  # logits per chunk (32 MiB in float32): large enough for efficient matmuls


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        weight: Tensor,
        targets: Tensor,
        softcap: float | None,
        need_hidden: bool,
        need_weight: bool,
    ) -> Tensor:
        rows = max(1, CHUNK_ELEMENTS // weight.size(0))
        compute = torch.promote_types(hidden.dtype, torch.float32)  # softmax in float32 (float64 stays float64)
        total = torch.zeros((), dtype=compute, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=compute) if need_weight else None
        for start in range(0, hidden.size(0), rows):
            h = hidden[start : start + rows]  # (n, H)
            target = targets[start : start + rows]  # (n,)
            logits = (h @ weight.t()).to(compute)  # (n, V)
            if softcap:
                capped = torch.tanh(logits / softcap)  # Gemma-2: logits = cap * tanh(logits / cap)
                logits = capped * softcap
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            total += (lse - logits.gather(1, target[:, None]).squeeze(1)).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits: (n, V)
            grad[torch.arange(len(target), device=grad.device), target] -= 1.0  # d loss / d logits
            if softcap:
                grad.mul_(1.0 - capped * capped)  # through the tanh
            grad = grad.to(weight.dtype)  # under autocast the matmuls below cast it again, as nn.Linear would
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = grad @ weight  # (n, V) @ (V, H)
            if grad_weight is not None:
                grad_weight += (grad.t() @ h).to(compute)  # (V, n) @ (n, H)
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.need = (need_hidden, need_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        saved = iter(ctx.saved_tensors)
        need_hidden, need_weight = ctx.need
        grad_hidden = next(saved) * grad_total if need_hidden else None
        grad_weight = (next(saved) * grad_total).to(ctx.weight_dtype) if need_weight else None
        return grad_hidden, grad_weight, None, None, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, softcap: float | None = None) -> Tensor:
    """Summed cross-entropy of `softcap(hidden @ weight.T)` against `targets`, equal (loss and gradients) to
    `F.cross_entropy(logits, targets, reduction="sum")` on the full logits.

    hidden (N, H), weight (V, H) as in nn.Linear (no bias), targets (N,) class ids, every one scored (select
    the labelled rows first). softcap: Gemma-2's final_logit_softcapping, or None.
    """
    grad = torch.is_grad_enabled()
    return _LinearCrossEntropy.apply(
        hidden, weight, targets, softcap, grad and hidden.requires_grad, grad and weight.requires_grad
    )
