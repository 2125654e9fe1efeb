"""dlkit llm train vs Hugging Face Trainer (both its settings) on the same model, data, LoRA, batch and steps.

Two model shapes:
- tiny-llama: builtin:tiny-llama (vocabulary 2,000), conversations of 48-512 tokens, batch 8;
- gemma2-256k: builtin:tiny-gemma2's architecture with Gemma-2's 256,000-token vocabulary (random init,
  tied embeddings, final-logit soft-capping, eager attention), conversations of 48-256 tokens, batch 4.
  Here the LM head and its logits are most of a step's compute and memory, as in real Gemma-2 fine-tuning.

Loss on the assistant tokens only; LoRA r=8 (alpha 16, dropout 0.05) on q_proj,v_proj; AdamW lr 1e-3;
clipping at 1.0. Contenders:
- trainer: Trainer's default (random batches, DataCollatorForSeq2Seq padding to the longest);
- trainer_grouped: Trainer with `train_sampling_strategy="group_by_length"` (its best setting);
- dlkit: `dlkit llm train` (length-grouped batches, LM head on labelled positions only, chunked cross-entropy);
- dlkit_packing (tiny-llama): `--packing` (rows of 512 tokens, block-diagonal mask).

- gemma2-2b: Gemma-2-2B's published config (random init, stored in bf16; benchmarks/real_size.py), for a GPU:
  benchmarks/gpu_check.sh runs it in bf16 and, with `--quantize 4bit`, as QLoRA on both sides (bitsandbytes
  NF4 with double quantisation, PEFT's k-bit preparation).

Each contender runs in its own process (peak memory is per process: RSS on CPU, CUDA max allocated on a
GPU), alternating contenders in every round so a busy machine slows them alike; medians over rounds. Speed
is useful (non-pad) tokens per second over the same steady steps (after `--warmup` steps) on both sides,
by wall clock and by process CPU time (the CPU figure is the steadier one on a shared machine).
Prints one JSON object with the ratios dlkit / Trainer's best setting.

    python benchmarks/llm_throughput.py [--steps N] [--rounds 3] [--shapes tiny-llama,gemma2-256k]
        [--precision bf16] [--quantize 4bit] [--root DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# steps: timed steps by default. On the tiny Llama, warm-up + timed + final step make one epoch (50 batches),
# so every contender times the same conversations: a 10-step window times whichever lengths its sampler drew
# first, and attention makes a long batch cost more per token (10 steps measured 1.16x where the epoch gives
# 1.34x). The 256k shape is dominated by the LM head, whose cost per token does not depend on the length.
SHAPES = {
    "tiny-llama": {"batch_size": 8, "max_tokens": 512, "examples": 400, "steps": 48},
    "gemma2-256k": {"batch_size": 4, "max_tokens": 256, "examples": 200, "steps": 4},
    "gemma2-2b": {"batch_size": 4, "max_tokens": 512, "examples": 120, "steps": 8},
}
LORA = {"r": 8, "alpha": 16.0, "dropout": 0.05, "targets": ["q_proj", "v_proj"]}
LR = 1e-3


# -- setup (main process) ------------------------------------------------------------------------


def model_folder(shape: str, root: Path) -> Path:
    """The shape's model as a save_pretrained folder (the 256k one is written once under `root`)."""
    from dlkit.builtin.tiny_lm import tiny_gemma2, tiny_llama
    from dlkit.core.progress import quiet_transformers

    with quiet_transformers():  # no "Writing model shards" bars between the results
        if shape == "tiny-llama":
            return tiny_llama()
        if shape == "gemma2-2b":
            from real_size import gemma_folder

            path = root / "gemma2-2b-bf16"
            if not (path / "config.json").is_file():
                gemma_folder(path)
            return path
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = root / "gemma2-256k"
        if not path.exists():
            base = tiny_gemma2()
            config = AutoConfig.from_pretrained(base)
            config.vocab_size = 256_000  # Gemma-2's vocabulary; the tokenizer uses the first 2,000 ids
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(config).save_pretrained(path)
            AutoTokenizer.from_pretrained(base).save_pretrained(path)
        return path


def make_conversations(num: int, tokenizer, max_tokens: int, seed: int = 0, min_tokens: int = 48) -> list[dict]:
    """ShareGPT rows whose templated length is uniform in [min_tokens, max_tokens] tokens."""
    from dlkit.builtin.corpus import bilingual_corpus
    from dlkit.llm.data import encode

    rng = random.Random(seed)
    words = " ".join(bilingual_corpus(400)).split()
    probe = " ".join(words[:400])
    tokens_per_word = len(tokenizer(probe, add_special_tokens=False)["input_ids"]) / 400
    rows = []
    while len(rows) < num:
        target = rng.randint(min_tokens, max_tokens)  # templated tokens, uniform
        content_words = max(4, int((target - 12) / tokens_per_word))
        answer_words = max(2, int(content_words * rng.uniform(0.2, 0.6)))
        messages = [
            {"role": "user", "content": " ".join(rng.choices(words, k=content_words - answer_words))},
            {"role": "assistant", "content": " ".join(rng.choices(words, k=answer_words))},
        ]
        ids, _ = encode(tokenizer, messages)
        if min_tokens <= len(ids) <= max_tokens:
            rows.append(
                {
                    "conversations": [
                        {"from": "human", "value": messages[0]["content"]},
                        {"from": "gpt", "value": messages[1]["content"]},
                    ]
                }
            )
    return rows


# -- one contender (worker process) --------------------------------------------------------------


class StepClock:
    """Wall and CPU time at the start of every step, and the useful tokens of every step's batch."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []
        self.tokens: list[int] = []
        self.rss_at_start_mb = 0.0

    def start_step(self) -> None:
        if not self.starts:
            self.rss_at_start_mb = current_rss_mb()
        self.starts.append((time.perf_counter(), time.process_time()))

    def result(self, warmup: int) -> dict:
        """Steps warmup .. last-1, each timed from its start to the next step's start."""
        (wall0, cpu0), (wall1, cpu1) = self.starts[warmup], self.starts[-1]
        tokens = sum(self.tokens[warmup : len(self.starts) - 1])
        return {
            "timed_steps": len(self.starts) - 1 - warmup,
            "tokens": tokens,
            "tokens_per_second": tokens / (wall1 - wall0),
            "tokens_per_cpu_second": tokens / (cpu1 - cpu0),
            "seconds_per_step": (wall1 - wall0) / (len(self.starts) - 1 - warmup),
        }


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory() -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_dlkit(args, clock: StepClock, packing: bool) -> None:
    from dlkit.core.config import load_config
    from dlkit.core.engine import fit
    from dlkit.core.run import Run
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import LlmTask

    cfg = load_config(
        LlmConfig,
        None,
        {
            "method": "lora",
            "rank": LORA["r"],
            "alpha": LORA["alpha"],
            "dropout": LORA["dropout"],
            "target_modules": ",".join(LORA["targets"]),
            "model": args.model,
            "data": args.data,
            "output_dir": args.out,
            "max_steps": args.total_steps,
            "batch_size": args.batch_size,
            "val_size": 8,
            "test_size": 0,
            "max_length": args.max_tokens,
            "eval_every": 10**9,
            "log_every": 10**9,
            "save_every": 10**9,
            "lr": LR,
            "packing": packing,
            "precision": args.precision,
            "quantize": args.quantize,
        },
    )
    task = LlmTask(cfg)
    step = task.training_step

    def timed_step(model, batch):
        clock.start_step()
        clock.tokens.append(int(batch.get("token_mask", batch["attention_mask"]).sum()))
        return step(model, batch)

    task.training_step = timed_step
    fit(task, cfg, Run.create("llm", cfg, default_name="bench"))


def run_trainer(args, clock: StepClock, grouped: bool) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from dlkit.llm.data import encode, to_messages

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    examples = []
    for line in Path(args.data).read_text(encoding="utf-8").splitlines():
        ids, labels = encode(tokenizer, to_messages(json.loads(line), "sharegpt"))
        examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    torch.manual_seed(0)
    extra = {"attn_implementation": "eager"} if "gemma" in Path(args.model).name else {}  # as dlkit loads Gemma-2
    base = AutoModelForCausalLM.from_pretrained(args.model, **extra, **quantized_load(args))
    if args.quantize != "none":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = get_peft_model(
        base,
        LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=LORA["targets"],
        ),
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)

    def counting_collator(features):
        batch = collator(features)
        clock.tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            clock.start_step()

    sampling = {"train_sampling_strategy": "group_by_length"} if grouped else {}
    targs = TrainingArguments(
        output_dir=args.out,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.total_steps,
        learning_rate=LR,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
        bf16=args.precision == "bf16",
        **sampling,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=Dataset.from_list(examples),
        data_collator=counting_collator,
        callbacks=[Clock()],
    )
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its own summary; stdout is our JSON
        trainer.train()


def quantized_load(args) -> dict:
    """The Trainer's from_pretrained arguments for --quantize 4bit: the QLoRA recipe dlkit follows."""
    if args.quantize == "none":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if args.precision == "bf16" else torch.float32
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        ),
        "device_map": {"": device},
        "dtype": compute,
    }


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from dlkit.core.progress import MODE

    MODE.quiet = True
    clock = StepClock()
    if args.worker.startswith("dlkit"):
        run_dlkit(args, clock, packing=args.worker == "dlkit_packing")
    else:
        run_trainer(args, clock, grouped=args.worker == "trainer_grouped")
    del clock.starts[args.total_steps :]  # dlkit's final evaluation also calls training_step
    print(json.dumps({**clock.result(args.warmup), **peak_memory(), "rss_at_first_step_mb": clock.rss_at_start_mb}))


# -- driver --------------------------------------------------------------------------------------


def launch(args, contender: str, shape: str, model: Path, data: Path, out: Path) -> dict:
    spec = SHAPES[shape]
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        contender,
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--batch-size",
        str(spec["batch_size"]),
        "--max-tokens",
        str(spec["max_tokens"]),
        "--total-steps",
        str(args.warmup + (args.steps or spec["steps"]) + 1),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--precision",
        args.precision,
        "--quantize",
        args.quantize,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"{contender} on {shape} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    keys = [
        "tokens_per_second",
        "tokens_per_cpu_second",
        "seconds_per_step",
        "peak_rss_mb",
        "peak_cuda_mb",
        "rss_at_first_step_mb",
    ]
    out = {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]}
    out["rounds_tokens_per_second"] = [round(r["tokens_per_second"]) for r in runs]
    out["timed_steps"], out["tokens_per_round"] = runs[0]["timed_steps"], [r["tokens"] for r in runs]
    return out


def speed(table: dict, ours: str, theirs: str) -> float:
    return table[ours]["tokens_per_second"] / table[theirs]["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="timed steps per run, after --warmup (default: the shape's own: 48 for tiny-llama, 4 for gemma2-256k)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps of every run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the contenders")
    parser.add_argument("--shapes", default="tiny-llama,gemma2-256k")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of every run")
    parser.add_argument("--precision", choices=["no", "bf16"], default="no", help="bf16: autocast (on a GPU)")
    parser.add_argument("--quantize", choices=["none", "4bit"], default="none", help="4bit: QLoRA on both sides")
    parser.add_argument(
        "--contenders",
        default="trainer,trainer_grouped,dlkit,dlkit_packing",
        help="which to run (dlkit_packing runs on tiny-llama only)",
    )
    parser.add_argument("--root", type=Path, help="keep the generated models here (default: a temporary folder)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    for hidden in ("--model", "--data", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    for hidden in ("--batch-size", "--max-tokens", "--total-steps"):
        parser.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    from transformers import AutoTokenizer

    from dlkit.llm.data import encode, to_messages

    result: dict = {
        "setup": {
            "method": "lora r8 alpha16 dropout0.05 q_proj,v_proj",
            "lr": LR,
            "steps": args.steps or {name: shape["steps"] for name, shape in SHAPES.items()},
            "warmup": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "precision": args.precision,
            "quantize": args.quantize,
            "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = args.root or root
        for shape in args.shapes.split(","):
            spec = SHAPES[shape]
            model = model_folder(shape, models)
            tokenizer = AutoTokenizer.from_pretrained(model)
            rows = make_conversations(spec["examples"], tokenizer, spec["max_tokens"])
            data = root / f"{shape}.jsonl"
            data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            lengths = [len(encode(tokenizer, to_messages(r, "sharegpt"))[0]) for r in rows]
            contenders = [c for c in args.contenders.split(",") if c != "dlkit_packing" or shape == "tiny-llama"]
            runs: dict[str, list[dict]] = {c: [] for c in contenders}
            for round_ in range(args.rounds):
                order = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
                for contender in order:
                    print(f"{shape} round {round_ + 1}: {contender}", file=sys.stderr, flush=True)
                    runs[contender].append(
                        launch(args, contender, shape, model, data, root / f"{shape}-{contender}-{round_}")
                    )
                    print(json.dumps(runs[contender][-1]), file=sys.stderr, flush=True)  # partial results
            table = {c: summarise(r) for c, r in runs.items()}
            best = max(
                (c for c in ("trainer", "trainer_grouped") if c in table), key=lambda c: table[c]["tokens_per_second"]
            )
            memory = "peak_cuda_mb" if "peak_cuda_mb" in table["dlkit"] else "peak_rss_mb"
            ratios = {
                "trainer_best_setting": best,
                "speedup_vs_trainer_best": speed(table, "dlkit", best),
                # within each round the contenders ran back to back, so these ratios cancel a machine that
                # speeds up or slows down from round to round (the medians above do not)
                "round_speedups_vs_trainer_best": [
                    round(ours["tokens_per_second"] / theirs["tokens_per_second"], 3)
                    for ours, theirs in zip(runs["dlkit"], runs[best], strict=True)
                ],
                "speedup_vs_trainer_default": speed(table, "dlkit", "trainer") if "trainer" in table else None,
                "cpu_speedup_vs_trainer_best": (
                    table["dlkit"]["tokens_per_cpu_second"] / table[best]["tokens_per_cpu_second"]
                ),
                f"{memory}_vs_trainer_best": table["dlkit"][memory] / table[best][memory],
                f"{memory}_vs_trainer_default": (
                    table["dlkit"][memory] / table["trainer"][memory] if "trainer" in table else None
                ),
            }
            if "dlkit_packing" in table:
                ratios["packing_speedup_vs_trainer_best"] = speed(table, "dlkit_packing", best)
            result[shape] = {
                "batch_size": spec["batch_size"],
                "examples": len(rows),
                "min_tokens": min(lengths),
                "max_tokens": max(lengths),
                "mean_tokens": sum(lengths) / len(lengths),
                **table,
                "ratios": ratios,
            }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
