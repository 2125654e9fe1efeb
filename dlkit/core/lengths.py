"""What a model reads is bounded before anything grows with the raw input: a prompt longer than the model's
budget keeps its end (the question, the turn being answered, the generation prompt) and the cut is counted
and said. Every path that feeds text to a model (training rows, eval loss, eval samples, eval, generate,
reason) cuts here, on token ids, before tensors or attention masks are built."""

from __future__ import annotations

from collections.abc import Sequence


def keep_end(ids: Sequence[int], budget: int) -> list[int]:
    """The last `budget` ids (all of them when they fit)."""
    return list(ids[len(ids) - budget :]) if len(ids) > budget else list(ids)


def bound_prompts(prompts: Sequence[Sequence[int]], budget: int, what: str = "prompts") -> list[list[int]]:
    """Every prompt cut to its last `budget` ids; one line says how many were longer."""
    cut = sum(len(p) > budget for p in prompts)
    if cut:
        from dlkit.core.progress import warn

        warn(
            f"{cut} of {len(prompts)} {what} were longer than the budget of {budget} tokens; each keeps its "
            f"last {budget}"
        )
    return [keep_end(p, budget) for p in prompts]
