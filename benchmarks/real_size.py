"""Every group's `train` at the size the course uses, on this machine's CPU: random-init models built from the
public config.json values of the course's models (typed in below; no weights are downloaded), a few steps each.

    python benchmarks/real_size.py [--cases llm-gemma2-2b-lora,vit-base-lora,...] [--steps 3] [--budget-gib 8]

Each case runs `dlkit GROUP train ... --json` in its own process and reports seconds per optimizer step (the
engine's train_seconds / steps: eval and checkpointing excluded) and the process's peak resident memory
(loading included). A case whose `dlkit llm plan` says it needs more than --budget-gib is not run; its plan is
reported instead. Prints one JSON object. Model folders are written once under --root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# -- the public configs (config.json of each Hub model, the fields that shape it) ------------------------------

# google/gemma-2-2b
GEMMA2_2B = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
    "cache_implementation": "hybrid",
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304,
    "initializer_range": 0.02,
    "intermediate_size": 9216,
    "max_position_embeddings": 8192,
    "num_attention_heads": 8,
    "num_hidden_layers": 26,
    "num_key_value_heads": 4,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "torch_dtype": "float32",
    "vocab_size": 256000,
}
# google/vit-base-patch16-224
VIT_BASE = {
    "model_type": "vit",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}
# facebook/deit-small-patch16-224
DEIT_SMALL = {
    "model_type": "deit",
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}
# bert-base-uncased
BERT_BASE = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
# FacebookAI/roberta-base
ROBERTA_BASE = {
    "model_type": "roberta",
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
# openai-community/gpt2
GPT2 = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-05,
    "initializer_range": 0.02,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
}
# EfficientNet-B0: torchvision's builder (`caption --encoder efficientnet_b0`, no weights); ConvNeXt-Base CLIP:
# open_clip's convnext_base config with pretrained=None (`clip --model convnext_base --pretrained none`).
# charrnn: nanoGPT's shakespeare_char GPT (6 layers, 6 heads, width 384, blocks of 256 characters).


# -- model folders -------------------------------------------------------------------------------------------


def from_config(cls_name: str, values: dict, folder: Path, dtype: str = "float32", **extra) -> None:
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(**values, **extra)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # built in the dtype it is saved in: 5 GB, not 10, for Gemma
    try:
        model = getattr(transformers, cls_name)(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)


def gemma_folder(folder: Path) -> None:
    from transformers import AutoTokenizer

    from dlkit.builtin.tiny_lm import tiny_gemma2

    from_config("Gemma2ForCausalLM", GEMMA2_2B, folder, dtype="bfloat16")  # a bf16 copy, as users save one
    AutoTokenizer.from_pretrained(tiny_gemma2()).save_pretrained(folder)  # ids < 2,000 of the 256k vocabulary


def image_folder(cls_name: str, values: dict) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        from transformers import ViTImageProcessor

        from_config(cls_name, values, folder)
        ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)

    return build


def text_folder(cls_name: str, values: dict, builtin: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        from transformers import AutoTokenizer

        from dlkit.builtin import BUILTINS

        from_config(cls_name, values, folder)
        AutoTokenizer.from_pretrained(BUILTINS[builtin].load()).save_pretrained(folder)

    return build


def vit_gpt2_folder(folder: Path) -> None:
    from transformers import AutoTokenizer, ViTImageProcessor

    from dlkit.builtin.vit_gpt2 import configure_special_tokens, from_encoder_decoder, tiny_vit_gpt2

    from_config("ViTModel", VIT_BASE, folder / "encoder")
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder / "encoder")
    from_config("GPT2LMHeadModel", GPT2, folder / "decoder")
    tokenizer = AutoTokenizer.from_pretrained(tiny_vit_gpt2())
    tokenizer.save_pretrained(folder / "decoder")
    model = from_encoder_decoder(str(folder / "encoder"), str(folder / "decoder"))
    configure_special_tokens(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)


FOLDERS: dict[str, Callable[[Path], None]] = {
    "gemma2-2b-bf16": gemma_folder,
    "vit-base": image_folder("ViTForImageClassification", VIT_BASE),
    "deit-small": image_folder("DeiTForImageClassification", DEIT_SMALL),
    "bert-base": text_folder("BertForQuestionAnswering", BERT_BASE, "tiny-bert"),
    "roberta-base": text_folder("RobertaForSequenceClassification", ROBERTA_BASE, "tiny-roberta"),
    "vit-gpt2": vit_gpt2_folder,
}

# -- the cases: a group's train command at real size; {name} is a folder of FOLDERS -----------------------------

COMMON = ["--eval-every", "100000", "--save-every", "100000", "--log-every", "1"]
CASES: dict[str, tuple[str | None, list[str]]] = {
    "llm-gemma2-2b-lora": (
        "gemma2-2b-bf16",
        [
            "llm",
            "train",
            "--method",
            "lora",
            "--precision",
            "bf16",
            "--batch-size",
            "2",
            "--max-length",
            "128",
            "--limit",
            "60",
            "--val-size",
            "4",
            "--test-size",
            "4",
            "--max-new-tokens",
            "4",
            "--lr",
            "2e-4",
        ],
    ),
    "vit-base-lora": (
        "vit-base",
        [
            "vit",
            "train",
            "--method",
            "lora",
            "--data",
            "builtin:digits",
            "--image-size",
            "224",
            "--batch-size",
            "8",
            "--max-train-samples",
            "64",
            "--max-eval-samples",
            "16",
        ],
    ),
    "deit-small-last-block": (
        "deit-small",
        [
            "vit",
            "train",
            "--method",
            "last-block",
            "--data",
            "builtin:digits",
            "--image-size",
            "224",
            "--batch-size",
            "8",
            "--max-train-samples",
            "64",
            "--max-eval-samples",
            "16",
        ],
    ),
    "qa-bert-base": (
        "bert-base",
        [
            "qa",
            "train",
            "--data",
            "builtin:qa-synthetic",
            "--max-length",
            "384",
            "--doc-stride",
            "128",
            "--batch-size",
            "8",
            "--max-eval-examples",
            "16",
        ],
    ),
    "adapter-roberta-base": (
        "roberta-base",
        [
            "adapter",
            "train",
            "--method",
            "adapter",
            "--bottleneck",
            "64",
            "--data",
            "builtin:sentiment",
            "--batch-size",
            "16",
            "--max-length",
            "128",
            "--lr",
            "1e-3",
            "--max-train-samples",
            "128",
            "--max-eval-samples",
            "32",
        ],
    ),
    "caption-efficientnet-b0-attention": (
        None,
        [
            "caption",
            "train",
            "--arch",
            "attention",
            "--encoder",
            "efficientnet_b0",
            "--freeze-encoder",
            "--image-size",
            "224",
            "--batch-size",
            "16",
            "--hidden-dim",
            "512",
            "--embed-dim",
            "256",
            "--attention-dim",
            "256",
        ],
    ),
    "caption-vit-gpt2": ("vit-gpt2", ["caption", "train", "--arch", "vit-gpt2", "--batch-size", "8", "--lr", "5e-5"]),
    "clip-convnext-base-coop": (
        None,
        [
            "clip",
            "coop",
            "--model",
            "convnext_base",
            "--pretrained",
            "none",
            "--mode",
            "prompt",
            "--data",
            "builtin:shape-classes",
            "--batch-size",
            "16",
        ],
    ),
    "charrnn-gpt-6x384": (
        None,
        [
            "charrnn",
            "train",
            "--arch",
            "transformer",
            "--hidden-size",
            "384",
            "--num-layers",
            "6",
            "--num-heads",
            "6",
            "--block-size",
            "256",
            "--batch-size",
            "32",
            "--dropout",
            "0.2",
            "--attention",
            "sdpa",
        ],
    ),
}


def plan_gib(folder: Path, args: list[str]) -> dict:
    """`dlkit llm plan` of an llm case (its method, precision, batch and length)."""
    from dlkit.llm.config import PlanConfig
    from dlkit.llm.plan import plan

    flags = dict(zip(args[2::2], args[3::2], strict=True))
    return plan(
        PlanConfig(
            model=str(folder),
            method=flags["--method"],
            precision=flags["--precision"],
            batch_size=int(flags["--batch-size"]),
            max_length=int(flags["--max-length"]),
        )
    )


def run_case(name: str, root: Path, steps: int, budget_gib: float) -> dict:
    folder_name, args = CASES[name]
    args = list(args)
    row: dict = {"case": name}
    if folder_name is not None:
        folder = root / folder_name
        if not (folder / "config.json").is_file():
            FOLDERS[folder_name](folder)
        args += ["--model", str(folder)]
        if args[0] == "llm":
            planned = plan_gib(folder, args)
            fp32 = plan_gib(folder, [a if a != "bf16" else "no" for a in args])
            row["plan_gib"], row["plan_fp32_gib"] = planned["total_gib"], fp32["total_gib"]
            if planned["total_gib"] > budget_gib:
                row["skipped"] = f"the plan needs {planned['total_gib']} GiB > --budget-gib {budget_gib}"
                return row
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "dlkit",
            "--json",
            *args,
            *COMMON,
            "--max-steps",
            str(steps),
            "--output-dir",
            str(Path(out) / "run"),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else f"exit {proc.returncode}"
        return row
    metrics = json.loads(proc.stdout)
    row.update(
        {
            "params": metrics["total_params"],
            "trainable": metrics["trainable_params"],
            "steps": metrics["steps"],
            "seconds_per_step": round(metrics["train_seconds"] / metrics["steps"], 2),
            "peak_rss_gib": round(metrics["peak_memory_mb"] / 1024, 2),
        }
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budget-gib", type=float, default=8.0)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "dlkit-real-size")
    args = parser.parse_args()
    rows = []
    for name in args.cases.split(","):
        load = os.getloadavg()[0]
        rows.append({**run_case(name, args.root, args.steps, args.budget_gib), "load_before": round(load, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"torch_threads": os.environ.get("OMP_NUM_THREADS", "default"), "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
