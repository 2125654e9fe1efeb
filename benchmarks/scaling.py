"""How an epoch's cost grows: `dlkit llm train` against the Trainer's best setting (`group_by_length`) on the tiny
Llama with LoRA, one torch thread each, as data size and sequence length grow.

    python benchmarks/scaling.py [--sizes 1,4,16] [--lengths 128,256,512,1024,2048] [--rounds 1]

- data size: x1, x4, x16 of 107 rows drawn from self-instruct's length distribution (self_instruct_lengths.json,
  as course_peers.py's llm case), batch 8;
- sequence length: 65,536 / L rows of 0.9 L to L tokens for L = 128 ... 2048, so about the same tokens per
  epoch at every L (the growth is the cost per token), batch 8 rows.

Each point runs each contender in its own process (llm_throughput.py's workers) over one epoch; the first step is
warm-up and not timed. Seconds per epoch = the epoch's useful tokens / the steady tokens per second (wall), and
by process CPU time. Prints one JSON object and writes the plot (--plot, default benchmarks/scaling.png).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import llm_throughput  # noqa: E402

BASE_ROWS = 107
TOKENS_PER_EPOCH = 65_536
BATCH = 8


def size_rows(scale: int, tokenizer) -> list[dict]:
    """scale x BASE_ROWS rows with self-instruct's (prompt words, answer words), the words from dlkit's corpus."""
    from dlkit.builtin.corpus import bilingual_corpus

    lengths = json.loads((HERE / "self_instruct_lengths.json").read_text())["rows"]
    words = " ".join(bilingual_corpus(400)).split()
    rng = random.Random(0)
    rows = []
    for _ in range(scale * BASE_ROWS):
        prompt, answer = rng.choice(lengths)
        rows.append(
            {
                "conversations": [
                    {"from": "human", "value": " ".join(rng.choices(words, k=max(1, prompt)))},
                    {"from": "gpt", "value": " ".join(rng.choices(words, k=max(1, answer)))},
                ]
            }
        )
    return rows


def long_model(root: Path) -> Path:
    """builtin:tiny-llama with room for 4,096 positions (rotary, so no weight changes)."""
    import shutil

    from dlkit.builtin.tiny_lm import tiny_llama

    folder = root / "tiny-llama-4k"
    if not folder.exists():
        shutil.copytree(tiny_llama(), folder)
        config = json.loads((folder / "config.json").read_text())
        config["max_position_embeddings"] = 4096
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def point(args, model: Path, rows: list[dict], max_tokens: int, root: Path, name: str) -> dict:
    """Seconds per epoch of each contender on `rows`."""
    from transformers import AutoTokenizer

    from dlkit.llm.data import encode, to_messages

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokens = sum(len(encode(tokenizer, to_messages(r, "sharegpt"))[0]) for r in rows)
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    steps = math.ceil(len(rows) / BATCH)
    out: dict = {"rows": len(rows), "tokens": tokens, "steps": steps}
    worker = argparse.Namespace(warmup=1, threads=1, precision="no", steps=steps - 2)
    for contender in ("dlkit", "trainer_grouped"):
        runs = []
        for r in range(args.rounds):
            spec = {"batch_size": BATCH, "max_tokens": max_tokens}
            llm_throughput.SHAPES[name] = {**spec, "examples": len(rows), "steps": steps - 2}
            runs.append(llm_throughput.launch(worker, contender, name, model, data, root / f"{name}-{contender}-{r}"))
        best = min(runs, key=lambda run: tokens / run["tokens_per_second"])
        out[contender] = {
            "seconds_per_epoch": tokens / best["tokens_per_second"],
            "cpu_seconds_per_epoch": tokens / best["tokens_per_cpu_second"],
            "peak_rss_mb": best["peak_rss_mb"],
        }
    out["ratio"] = out["trainer_grouped"]["cpu_seconds_per_epoch"] / out["dlkit"]["cpu_seconds_per_epoch"]
    print(json.dumps({name: out}), file=sys.stderr, flush=True)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, xlabel in ((axes[0], "size", "data size (x 107 rows)"), (axes[1], "length", "sequence length")):
        xs = [int(k) for k in result[key]]
        for contender, label in (("dlkit", "dlkit"), ("trainer_grouped", "Trainer group_by_length")):
            ax.plot(xs, [result[key][str(x)][contender]["cpu_seconds_per_epoch"] for x in xs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("CPU seconds per epoch")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.legend()
    axes[0].set_title("self-instruct lengths, batch 8")
    axes[1].set_title(f"{TOKENS_PER_EPOCH:,} / L rows of 0.9 L to L tokens, batch 8")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--lengths", default="128,256,512,1024,2048")
    parser.add_argument("--rounds", type=int, default=1, help="runs per point and contender; the fastest is kept")
    parser.add_argument("--plot", type=Path, default=HERE / "scaling.png")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    result: dict = {
        "size": {},
        "length": {},
        "batch": BATCH,
        "base_rows": BASE_ROWS,
        "tokens_per_epoch_length_sweep": TOKENS_PER_EPOCH,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = long_model(root)
        tokenizer = AutoTokenizer.from_pretrained(model)
        for scale in (int(x) for x in args.sizes.split(",") if x):
            result["size"][str(scale)] = point(args, model, size_rows(scale, tokenizer), 4096, root, f"size-x{scale}")
        for length in (int(x) for x in args.lengths.split(",") if x):
            rows = llm_throughput.make_conversations(
                TOKENS_PER_EPOCH // length, tokenizer, length, min_tokens=int(0.9 * length)
            )
            result["length"][str(length)] = point(args, model, rows, length, root, f"length-{length}")
    if result["size"] and result["length"]:
        plot(result, args.plot)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
