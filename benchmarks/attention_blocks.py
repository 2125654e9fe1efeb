"""Causal self-attention on the CPU: one `F.scaled_dot_product_attention(is_causal=True)` call vs
dlkit.nn.blockwise (queries in blocks that skip the keys they may not see), forward and backward.

Also times the same call without the causal flag: below 512 keys torch's CPU flash kernel computes every
score either way, which is the waste the blocks remove. Calls alternate in pairs and the medians of the
per-pair ratios are printed (a ratio below 1 means faster than the one causal call), one JSON object:

    python benchmarks/attention_blocks.py [--pairs 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from dlkit.nn import blockwise

# (batch, query heads, key/value heads, head size): the benchmark's tiny Llama, and heads of real small models
SHAPES = {"tiny-llama": (8, 4, 2, 16), "head-64": (2, 8, 4, 64), "head-128": (2, 4, 4, 128)}
LENGTHS = [128, 192, 256, 320, 384, 448, 512, 768, 1024]


def ratio(reference, contender, pairs: int) -> float:
    for _ in range(2):
        reference()
        contender()
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        reference()
        t1 = time.perf_counter()
        contender()
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
    return round(statistics.median(ratios), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bounds = (blockwise.MIN_LENGTH, blockwise.MAX_LENGTH)
    blockwise.MIN_LENGTH, blockwise.MAX_LENGTH = 1, 10**9  # time the blocks at every length
    result: dict = {
        "threads": args.threads,
        "block": blockwise.BLOCK,
        "used_for_lengths": bounds,
        "torch": torch.__version__,
    }
    for name, (batch, heads, kv_heads, dim) in SHAPES.items():
        rows = {}
        for length in LENGTHS:
            q = torch.randn(batch, length, heads, dim).transpose(1, 2).requires_grad_()  # transformers' layout
            k, v = (torch.randn(batch, length, kv_heads, dim).transpose(1, 2).requires_grad_() for _ in range(2))
            gqa = kv_heads != heads

            def causal(q=q, k=k, v=v, gqa=gqa):
                F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa).sum().backward()

            def full(q=q, k=k, v=v, gqa=gqa):
                F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa).sum().backward()

            def blocks(q=q, k=k, v=v):
                blockwise.causal_attention(q, k, v).sum().backward()

            start = time.perf_counter()
            causal()
            rows[length] = {
                "causal_ms": round((time.perf_counter() - start) * 1000, 2),
                "full_vs_causal": ratio(causal, full, args.pairs),
                "blocks_vs_causal": ratio(causal, blocks, args.pairs),
            }
        result[name] = rows
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
