"""dlkit llm train vs Hugging Face Trainer on the same tiny Llama, the same data and the same LoRA.

Data: conversations of 48-512 tokens (uniform), loss on the assistant tokens only. Model: builtin:tiny-llama
with LoRA r=8 on q_proj,v_proj, batch 8, AdamW, the same number of steps. The Trainer gets the standard
recipe (random batches, DataCollatorForSeq2Seq padding to the longest); dlkit uses length-grouped batches
and projects only labelled positions through the LM head (and, as a third entry, packs conversations into
512-token rows with a block-diagonal mask). None lets tokens attend across conversations.

Reported: useful (non-pad) tokens per second for both and their ratio, then peak memory and trainable
parameters per method. Prints one JSON object. Run: python benchmarks/llm_throughput.py [--steps 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlkit.builtin.corpus import bilingual_corpus


def make_conversations(num: int, tokenizer, seed: int = 0) -> list[dict]:
    """ShareGPT rows whose templated length is uniform in [48, 512] tokens."""
    from dlkit.llm.data import encode

    rng = random.Random(seed)
    words = " ".join(bilingual_corpus(400)).split()
    probe = " ".join(words[:400])
    tokens_per_word = len(tokenizer(probe, add_special_tokens=False)["input_ids"]) / 400
    rows = []
    while len(rows) < num:
        target = rng.randint(48, 512)  # templated tokens, uniform
        content_words = max(4, int((target - 12) / tokens_per_word))
        answer_words = max(2, int(content_words * rng.uniform(0.2, 0.6)))
        messages = [{"role": "user", "content": " ".join(rng.choices(words, k=content_words - answer_words))},
                    {"role": "assistant", "content": " ".join(rng.choices(words, k=answer_words))}]
        ids, _ = encode(tokenizer, messages)
        if 48 <= len(ids) <= 512:
            rows.append({"conversations": [{"from": "human", "value": messages[0]["content"]},
                                           {"from": "gpt", "value": messages[1]["content"]}]})
    return rows


def run_dlkit(data: Path, out: Path, steps: int, packing: bool = False) -> dict:
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import train

    cfg = load_config(LlmConfig, None, {"method": "lora", "rank": 8, "target_modules": "q_proj,v_proj",
                                        "data": str(data), "output_dir": str(out), "max_steps": steps,
                                        "batch_size": 8, "val_size": 8, "test_size": 0, "max_length": 512,
                                        "eval_every": 10_000, "log_every": 10_000, "lr": 1e-3,
                                        "packing": packing})
    metrics = train(cfg)
    return {"tokens_per_second": metrics["tokens_per_second"], "train_seconds": metrics["train_seconds"],
            "trainable_params": metrics["trainable_params"]}


def run_trainer(examples: list[dict], tokenizer, model_path: str, out: Path, steps: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path),
                           LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.05,
                                      target_modules=["q_proj", "v_proj"]))
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    useful = {"tokens": 0}

    def counting_collator(features):
        batch = collator(features)
        useful["tokens"] += int(batch["attention_mask"].sum())
        return batch

    dataset = Dataset.from_list([{"input_ids": e["input_ids"], "attention_mask": [1] * len(e["input_ids"]),
                                  "labels": e["labels"]} for e in examples])
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=8, max_steps=steps, learning_rate=1e-3,
                             logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting_collator)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its own summary; stdout is our JSON
        trainer.train()
    seconds = time.perf_counter() - start
    return {"tokens_per_second": useful["tokens"] / seconds, "train_seconds": seconds}


def per_method(model_path: str, examples: list[dict], tokenizer) -> list[dict]:
    """Trainable parameters and memory for a few steps of every method (CUDA peak, else trainable-state size)."""
    from types import SimpleNamespace

    from dlkit.core.engine import count_parameters
    from dlkit.core.sources import resolve
    from dlkit.llm.data import pad_batch
    from dlkit.llm.methods import METHODS
    from dlkit.llm.models import BaseModel, load_model
    from dlkit.llm.task import causal_lm_loss

    base = BaseModel(resolve("builtin:tiny-llama", "model"), model_path)
    settings = SimpleNamespace(rank=8, alpha=16.0, dropout=0.0, target_modules="q_proj,v_proj",
                               num_virtual_tokens=16, init_text=None, unfreeze="first2,last2")
    batch = pad_batch(examples[:8], tokenizer.pad_token_id)
    rows = []
    for name, method in METHODS.items():
        model = method.build(load_model(base), settings, model_path)
        trainable, total = count_parameters(model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(2):
            on_device = {k: v.to(device) for k, v in batch.items()}
            loss = model(**on_device).loss if method.family == "soft-prompt" else causal_lm_loss(model, on_device)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        row = {"method": name, "trainable_params": trainable, "trainable_pct": 100.0 * trainable / total,
               "seconds_per_step": (time.perf_counter() - start) / 2,
               # weights' grads + two AdamW moments, fp32
               "trainable_state_mb": trainable * 4 * 3 / 2**20}
        if device == "cuda":
            row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    from dlkit.builtin.tiny_lm import tiny_llama
    from dlkit.core.progress import MODE
    from dlkit.llm.data import encode, to_messages

    MODE.quiet = True
    model_path = str(tiny_llama())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = make_conversations(args.examples, tokenizer)
    examples = []
    for row in rows:
        ids, labels = encode(tokenizer, to_messages(row, "sharegpt"))
        examples.append({"input_ids": ids, "labels": labels})
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        trainer = run_trainer(examples, tokenizer, model_path, Path(tmp) / "hf", args.steps)
        dlkit = run_dlkit(data, Path(tmp) / "dlkit", args.steps)
        packed = run_dlkit(data, Path(tmp) / "dlkit-packed", args.steps, packing=True)
    lengths = [len(e["input_ids"]) for e in examples]
    result = {
        "setup": {"model": "builtin:tiny-llama", "method": "lora r8 q_proj,v_proj", "batch_size": 8,
                  "steps": args.steps, "examples": len(examples), "min_tokens": min(lengths),
                  "max_tokens": max(lengths), "mean_tokens": sum(lengths) / len(lengths), "threads": args.threads,
                  "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "hf_trainer": trainer,
        "dlkit": dlkit,
        "dlkit_packing": packed,
        "speedup_useful_tokens_per_second": dlkit["tokens_per_second"] / trainer["tokens_per_second"],
        "speedup_with_packing": packed["tokens_per_second"] / trainer["tokens_per_second"],
        "methods": per_method(model_path, examples, tokenizer),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
