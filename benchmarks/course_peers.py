"""dlkit against the code a course has students write, at real size on this CPU, one case per seed task.

    python benchmarks/course_peers.py CASE|all [--rounds 2] [--threads 1] [--scale 1]

Cases (random-init models built from the public config.json values typed in below; no weights are downloaded):
  deit-last-block  DeiT-small, the last block and the classifier train     vs HF Trainer, the rest frozen by hand
  vit-linear       ViT-base, a linear probe (the classifier trains)        vs HF Trainer, the rest frozen by hand
  vit-lora         ViT-base, LoRA r8 on q_proj,v_proj + the classifier     vs HF Trainer + PEFT
  qa               BERT-base extractive QA, windows of 384 (stride 128)    vs a run_qa.py-style Trainer
  caption          EfficientNet-B0 (frozen) + Show-Attend-Tell LSTM        vs a sgrvinod-style training loop
  llm              tiny-Llama LoRA on self-instruct's length distribution  vs Trainer + PEFT, group_by_length

Every run is a whole process (`dlkit GROUP train ...` or the peer's script, this file with --peer), timed from
outside: wall seconds and the process's own CPU seconds (user + system, from the kernel), peak RSS, and the
1-minute load average before it. Contenders alternate within each round (the order flips every round) and run
with one torch thread each. Both sides train the same examples for the same epochs with the same batch size,
evaluate the same validation examples after every epoch and save the model at the end; inputs are not augmented
on either side. Examples per CPU-second is examples trained / CPU seconds, so dlkit over the peer is the peer's
CPU seconds over dlkit's. The ViT probes (deit-last-block, vit-linear) also run the course recipe's 10 epochs
(`ratio_10_epochs`, measured, not projected); cost(E) = fixed + E x per_epoch through the 3- and 10-epoch runs
splits each side's cost into what it pays once and per epoch (`per_epoch`). Prints one JSON object; `--scale K`
multiplies the number of examples. `all` runs every case in turn and prints a JSON list.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from real_size import BERT_BASE, DEIT_SMALL, VIT_BASE  # the course models' public configs, typed in once

HERE = Path(__file__).resolve().parent

# sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning: emb_dim, attention_dim, decoder_dim 512, dropout 0.5, batch 32,
# decoder lr 4e-4, alpha_c 1, grad clip 5; the encoder is EfficientNet-B0 (torchvision, 7x7x1280) here
CAPTION = {"dim": 512, "dropout": 0.5, "batch": 32, "lr": 4e-4, "alpha_c": 1.0, "clip": 5.0}
CLASSES = 10
RECIPE_EPOCHS = 10

# case -> (examples per epoch at scale 1, validation examples, batch size, also the recipe's 10 epochs)
CASES = {
    "deit-last-block": (32, 16, 8, True),
    "vit-linear": (16, 8, 8, True),
    "vit-lora": (8, 8, 8, False),
    "qa": (8, 8, 8, False),
    "caption": (40, 10, 32, False),
    "llm": (427, 0, 8, False),
}


# -- data and models, written once under --root ---------------------------------------------------------------


def image_folder(root: Path, train: int, val: int, side: int = 224) -> Path:
    """train/CLASS/*.png and validation/CLASS/*.png: noisy squares, one colour family per class."""
    import torch
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    bases = torch.rand(CLASSES, 3, generator=gen) * 200
    for split, count in (("train", train), ("validation", val)):
        for i in range(count):
            c = i % CLASSES
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (bases[c][:, None, None] + 40 * torch.rand(3, side, side, generator=gen)).clamp(0, 255)
            Image.fromarray(pixels.byte().permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root


def hf_folder(folder: Path, values: dict, cls_name: str, processor: bool = True) -> Path:
    import torch
    import transformers

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    getattr(transformers, cls_name)(transformers.AutoConfig.for_model(**values)).save_pretrained(folder)
    if processor:
        transformers.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def qa_files(root: Path, train: int, val: int) -> Path:
    """SQuAD v2 train.json / validation.json with the first questions of builtin:qa-synthetic."""
    from dlkit.builtin import BUILTINS

    source = Path(BUILTINS["qa-synthetic"].load())
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("validation", val)):
        data = json.loads((source / f"{split}.json").read_text())
        kept, left = [], count
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                qas = [q for q in paragraph["qas"] if not q.get("is_impossible")][:left]
                if qas:
                    kept.append({"title": article["title"], "paragraphs": [{**paragraph, "qas": qas}]})
                    left -= len(qas)
        (root / f"{split}.json").write_text(json.dumps({"version": "v2.0", "data": kept}))
    return root


def caption_folder(root: Path, images: int, val: int) -> Path:
    """Karpathy's dataset_flickr8k.json layout (what sgrvinod's code reads): 224x224 images of shapes, five
    captions each; `val` of them are the validation split and half as many the test split, which neither side
    trains or validates on (a folder without one would have dlkit cut its test images from validation)."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = ["red", "green", "blue", "yellow", "white"]
    entries = []
    for i in range(images):
        colour, other = rng.sample(colours, 2)
        image = Image.new("RGB", (224, 224), other)
        box = [rng.randint(0, 100), rng.randint(0, 100)]
        ImageDraw.Draw(image).ellipse(box + [box[0] + 100, box[1] + 100], fill=colour)
        name = f"{i:05d}.jpg"
        image.save(root / "images" / name)
        words = [
            f"a {colour} circle on {other}",
            f"the {colour} ball",
            f"{colour} round shape",
            f"a circle that is {colour}",
            f"{other} background with a {colour} circle",
        ]
        split = "val" if i < val else "test" if i < val + max(2, val // 2) else "train"
        entries.append(
            {"filename": name, "split": split, "sentences": [{"tokens": w.split(), "raw": w} for w in words]}
        )
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": entries}))
    return root


def llm_data(root: Path, scale: int) -> Path:
    """ShareGPT rows with self-instruct's (prompt words, answer words), the words drawn from dlkit's corpus."""
    import random

    from dlkit.builtin.corpus import bilingual_corpus

    lengths = json.loads((HERE / "self_instruct_lengths.json").read_text())["rows"]
    words = " ".join(bilingual_corpus(400)).split()
    rng = random.Random(0)
    path = root / f"self_instruct_x{scale}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(scale):
            for prompt, answer in lengths:
                turns = [
                    {"from": "human", "value": " ".join(rng.choices(words, k=max(1, prompt)))},
                    {"from": "gpt", "value": " ".join(rng.choices(words, k=max(1, answer)))},
                ]
                fh.write(json.dumps({"conversations": turns}, ensure_ascii=False) + "\n")
    return path


# -- commands ------------------------------------------------------------------------------------------------


def commands(case: str, root: Path, epochs: int, scale: int) -> dict[str, list[str]]:
    """Each contender's command line for `epochs` epochs."""
    train, val, batch, _ = CASES[case]
    train, val = train * scale, val * scale
    dlkit = [sys.executable, "-m", "dlkit", "-q"]
    peer = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--peer",
        case,
        "--root",
        str(root),
        "--epochs",
        str(epochs),
        "--scale",
        str(scale),
    ]
    out = str(root / f"out-{case}")
    common = [
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--output-dir",
        out,
        "--overwrite",
        "--save-every",
        "100000",
        "--warmup",
        "0",
        "--log-every",
        "1000",
    ]
    if case in ("deit-last-block", "vit-linear", "vit-lora"):
        model = root / ("deit-small" if case.startswith("deit") else "vit-base")
        method = {"deit-last-block": "last-block", "vit-linear": "linear", "vit-lora": "lora"}[case]
        ours = dlkit + [
            "vit",
            "train",
            "--model",
            str(model),
            "--data",
            str(root / f"images-{train}-{val}"),
            "--method",
            method,
            "--lr",
            "1e-3",
            *common,
        ]
    elif case == "qa":
        ours = dlkit + [
            "qa",
            "train",
            "--model",
            str(root / "bert-base"),
            "--data",
            str(root / f"qa-{train}"),
            "--max-length",
            "384",
            "--doc-stride",
            "128",
            "--head",
            "linear",
            "--lr",
            "3e-5",
            *common,
        ]
    elif case == "caption":
        ours = dlkit + [
            "caption",
            "train",
            "--data",
            str(root / f"caption-{train}"),
            "--arch",
            "attention",
            "--encoder",
            "efficientnet_b0",
            "--no-pretrained-encoder",
            "--freeze-encoder",
            "--embed-dim",
            "512",
            "--hidden-dim",
            "512",
            "--attention-dim",
            "512",
            "--dropout",
            "0.5",
            "--lr",
            "4e-4",
            "--max-grad-norm",
            "5",
            *common,
        ]
    else:  # llm: no validation or test rows, as the Trainer script has none
        model, data = root / "tiny-llama", root / f"self_instruct_x{scale}.jsonl"
        ours = dlkit + [
            "llm",
            "train",
            "--model",
            str(model),
            "--data",
            str(data),
            "--method",
            "lora",
            "--rank",
            "8",
            "--alpha",
            "16",
            "--dropout",
            "0.05",
            "--target-modules",
            "q_proj,v_proj",
            "--lr",
            "1e-3",
            "--val-size",
            "0",
            "--test-size",
            "0",
            "--max-length",
            "4096",
            *common,
        ]
    return {"dlkit": ours, "peer": peer}


def prepare(case: str, root: Path, scale: int) -> None:
    train, val, _, _ = CASES[case]
    train, val = train * scale, val * scale
    if case in ("deit-last-block", "vit-linear", "vit-lora"):
        if not (root / f"images-{train}-{val}").is_dir():
            image_folder(root / f"images-{train}-{val}", train, val)
        if case.startswith("deit"):
            hf_folder(root / "deit-small", DEIT_SMALL, "DeiTForImageClassification")
        else:
            hf_folder(root / "vit-base", VIT_BASE, "ViTForImageClassification")
    elif case == "qa":
        from transformers import AutoTokenizer

        from dlkit.builtin import BUILTINS

        folder = hf_folder(root / "bert-base", BERT_BASE, "BertForQuestionAnswering", processor=False)
        AutoTokenizer.from_pretrained(BUILTINS["tiny-bert"].load()).save_pretrained(folder)
        qa_files(root / f"qa-{train}", train, val)
    elif case == "caption":
        if not (root / f"caption-{train}").is_dir():
            caption_folder(root / f"caption-{train}", train + val + max(2, val // 2), val)
    else:
        from dlkit.builtin.tiny_lm import tiny_llama

        llm_data(root, scale)
        if not (root / "tiny-llama").exists():
            (root / "tiny-llama").symlink_to(tiny_llama())


# -- timing --------------------------------------------------------------------------------------------------


def run_once(command: list[str]) -> dict:
    """Wall and CPU seconds (user + system, as the kernel counted them for the finished process) and peak RSS of
    one whole run, with the load average before it."""
    load = os.getloadavg()[0]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(ARGS.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load_before": round(load, 2),
    }


def bench(case: str, root: Path) -> dict:
    train, _, _, recipe = CASES[case]
    examples = train * ARGS.scale
    prepare(case, root, ARGS.scale)
    epoch_counts = [3, RECIPE_EPOCHS] if recipe else [3]
    runs: dict[str, dict[int, list[dict]]] = {c: {e: [] for e in epoch_counts} for c in ("dlkit", "peer")}
    for round_ in range(ARGS.rounds):
        for epochs in epoch_counts:
            cmds = commands(case, root, epochs, ARGS.scale)
            order = ["dlkit", "peer"] if round_ % 2 == 0 else ["peer", "dlkit"]
            for contender in order:
                row = run_once(cmds[contender])
                row.update(contender=contender, epochs=epochs, round=round_ + 1)
                print(json.dumps(row), file=sys.stderr, flush=True)
                runs[contender][epochs].append(row)
    result: dict = {
        "case": case,
        "examples_per_epoch": examples,
        "rounds": ARGS.rounds,
        "threads": ARGS.threads,
        "scale": ARGS.scale,
    }
    for contender, by_epochs in runs.items():
        result[contender] = {
            f"{e}_epochs": {
                "wall_s": statistics.median(r["wall_s"] for r in rows),
                "cpu_s": statistics.median(r["cpu_s"] for r in rows),
                "examples_per_cpu_second": examples * e / statistics.median(r["cpu_s"] for r in rows),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
                "rounds_cpu_s": [round(r["cpu_s"], 1) for r in rows],
                "rounds_wall_s": [round(r["wall_s"], 1) for r in rows],
                "load_before": [r["load_before"] for r in rows],
            }
            for e, rows in by_epochs.items()
        }
    for epochs in epoch_counts:
        side = {c: result[c][f"{epochs}_epochs"] for c in runs}
        result[f"ratio_{epochs}_epochs"] = {
            "examples_per_cpu_second": side["peer"]["cpu_s"] / side["dlkit"]["cpu_s"],
            "wall": side["peer"]["wall_s"] / side["dlkit"]["wall_s"],
            # within each round the two ran back to back, so these cancel a machine that speeds up or slows down
            "rounds_cpu": [
                round(p["cpu_s"] / d["cpu_s"], 3)
                for d, p in zip(runs["dlkit"][epochs], runs["peer"][epochs], strict=True)
            ],
        }
    if recipe:
        split = {}
        for contender in runs:
            three, ten = (result[contender][f"{e}_epochs"]["cpu_s"] for e in (3, RECIPE_EPOCHS))
            per_epoch = (ten - three) / (RECIPE_EPOCHS - 3)
            split[contender] = {"fixed_cpu_s": three - 3 * per_epoch, "per_epoch_cpu_s": per_epoch}
        result["per_epoch"] = {
            **split,
            "ratio": split["peer"]["per_epoch_cpu_s"] / max(split["dlkit"]["per_epoch_cpu_s"], 1e-9),
        }
    return result


# -- the peers: the code a course has students write -----------------------------------------------------------


def peer_vit(case: str, root: Path, epochs: int, scale: int) -> None:
    """HF's run_image_classification recipe: ImageFolder + the image processor's eval transforms (no
    augmentation, as dlkit's default), AutoModelForImageClassification, the method's freezing by hand or PEFT,
    Trainer with an evaluation every epoch, then save_model."""
    import numpy as np
    import torch
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder
    from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

    train, val, batch, _ = CASES[case]
    data = root / f"images-{train * scale}-{val * scale}"
    folder = root / ("deit-small" if case.startswith("deit") else "vit-base")
    processor = AutoImageProcessor.from_pretrained(folder)
    tf = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(processor.image_mean, processor.image_std)])
    train_set, val_set = ImageFolder(str(data / "train"), tf), ImageFolder(str(data / "validation"), tf)
    model = AutoModelForImageClassification.from_pretrained(folder, num_labels=CLASSES, ignore_mismatched_sizes=True)
    if case == "vit-lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=8,
                lora_alpha=16,
                lora_dropout=0.1,
                target_modules=["q_proj", "v_proj"],
                modules_to_save=["classifier"],
            ),
        )
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        base = getattr(model, model.base_model_prefix)
        trainable = [model.classifier] + ([base.layers[-1]] if case == "deit-last-block" else [])
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)

    def collate(items):
        return {"pixel_values": torch.stack([x for x, _ in items]), "labels": torch.tensor([y for _, y in items])}

    def accuracy(pred):
        return {"accuracy": float((np.argmax(pred.predictions, axis=1) == pred.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(root / f"peer-{case}"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        num_train_epochs=epochs,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        logging_steps=1000,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=collate,
        compute_metrics=accuracy,
    )
    trainer.train()
    trainer.save_model()


def peer_qa(root: Path, epochs: int, scale: int) -> None:
    """transformers' examples/pytorch/question-answering/run_qa.py, reduced to its steps: windows of 384 tokens with
    a stride of 128 (`prepare_train_features`), AutoModelForQuestionAnswering, Trainer with an evaluation of the
    validation windows' loss every epoch, then save_model."""
    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    train, _, batch, _ = CASES["qa"]
    folder = root / f"qa-{train * scale}"

    def rows(split: str) -> list[dict]:
        out = []
        for article in json.loads((folder / f"{split}.json").read_text())["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    out.append(
                        {
                            "question": qa["question"],
                            "context": paragraph["context"],
                            "answers": {
                                "text": [a["text"] for a in qa["answers"]],
                                "answer_start": [a["answer_start"] for a in qa["answers"]],
                            },
                        }
                    )
        return out

    tokenizer = AutoTokenizer.from_pretrained(root / "bert-base")

    def prepare_train_features(examples):
        enc = tokenizer(
            [q.lstrip() for q in examples["question"]],
            examples["context"],
            truncation="only_second",
            max_length=384,
            stride=128,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        sample_map, offsets = enc.pop("overflow_to_sample_mapping"), enc.pop("offset_mapping")
        enc["start_positions"], enc["end_positions"] = [], []
        for i, offset in enumerate(offsets):
            cls = enc["input_ids"][i].index(tokenizer.cls_token_id)
            sequence_ids = enc.sequence_ids(i)
            answers = examples["answers"][sample_map[i]]
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            first = sequence_ids.index(1)
            last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
            if not (offset[first][0] <= start_char and offset[last][1] >= end_char):
                enc["start_positions"].append(cls)
                enc["end_positions"].append(cls)
                continue
            start, end = first, last
            while start <= last and offset[start][0] <= start_char:
                start += 1
            while end >= first and offset[end][1] >= end_char:
                end -= 1
            enc["start_positions"].append(start - 1)
            enc["end_positions"].append(end + 1)
        return enc

    def features(split: str) -> Dataset:
        data = Dataset.from_list(rows(split))
        return data.map(prepare_train_features, batched=True, remove_columns=data.column_names)

    model = AutoModelForQuestionAnswering.from_pretrained(root / "bert-base")
    args = TrainingArguments(
        output_dir=str(root / "peer-qa"),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        num_train_epochs=epochs,
        learning_rate=3e-5,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        logging_steps=1000,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features("train"),
        eval_dataset=features("validation"),
        data_collator=default_data_collator,
    )
    trainer.train()
    trainer.save_model()


def peer_caption(root: Path, epochs: int, scale: int) -> None:
    """sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning train.py with fine_tune_encoder=False: the encoder runs
    on every batch (no gradients), DecoderWithAttention on its 7x7 grid, captions sorted by length and the loss on
    pack_padded_sequence, doubly stochastic regularisation, gradient clipping, a validation pass (loss) after every
    epoch, then the checkpoint saved."""
    import torch
    from PIL import Image
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence
    from torchvision import transforms as T
    from torchvision.models import efficientnet_b0

    train, _, batch, _ = CASES["caption"]
    folder = root / f"caption-{train * scale}"
    images = json.loads((folder / "dataset_flickr8k.json").read_text())["images"]
    words = sorted({w for img in images for s in img["sentences"] for w in s["tokens"]})
    word_map = {w: i + 1 for i, w in enumerate(words)}
    word_map.update({"<unk>": len(word_map) + 1, "<start>": len(word_map) + 2, "<end>": len(word_map) + 3, "<pad>": 0})
    max_len = max(len(s["tokens"]) for img in images for s in img["sentences"])
    tf = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class CaptionDataset(torch.utils.data.Dataset):
        def __init__(self, split: str):
            self.items = [
                (img["filename"], s["tokens"]) for img in images if img["split"] == split for s in img["sentences"]
            ]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            name, tokens = self.items[i]
            image = tf(Image.open(folder / "images" / name).convert("RGB"))
            ids = [word_map["<start>"]] + [word_map[w] for w in tokens] + [word_map["<end>"]]
            caption = torch.tensor(ids + [0] * (max_len + 2 - len(ids)))
            return image, caption, torch.tensor([len(ids)])

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = efficientnet_b0(weights=None).features

        def forward(self, images):
            return self.cnn(images).permute(0, 2, 3, 1)  # (B, 7, 7, 1280)

    class Attention(nn.Module):
        def __init__(self, encoder_dim, decoder_dim, attention_dim):
            super().__init__()
            self.encoder_att = nn.Linear(encoder_dim, attention_dim)
            self.decoder_att = nn.Linear(decoder_dim, attention_dim)
            self.full_att = nn.Linear(attention_dim, 1)

        def forward(self, encoder_out, decoder_hidden):
            att = self.full_att(
                torch.relu(self.encoder_att(encoder_out) + self.decoder_att(decoder_hidden).unsqueeze(1))
            ).squeeze(2)
            alpha = torch.softmax(att, dim=1)
            return (encoder_out * alpha.unsqueeze(2)).sum(dim=1), alpha

    class DecoderWithAttention(nn.Module):
        def __init__(self, dim, vocab_size, encoder_dim=1280, dropout=0.5):
            super().__init__()
            self.attention = Attention(encoder_dim, dim, dim)
            self.embedding = nn.Embedding(vocab_size, dim)
            self.dropout = nn.Dropout(p=dropout)
            self.decode_step = nn.LSTMCell(dim + encoder_dim, dim, bias=True)
            self.init_h, self.init_c = nn.Linear(encoder_dim, dim), nn.Linear(encoder_dim, dim)
            self.f_beta = nn.Linear(dim, encoder_dim)
            self.fc = nn.Linear(dim, vocab_size)

        def forward(self, encoder_out, captions, lengths):
            b = encoder_out.size(0)
            encoder_out = encoder_out.view(b, -1, encoder_out.size(-1))
            lengths, order = lengths.squeeze(1).sort(dim=0, descending=True)
            encoder_out, captions = encoder_out[order], captions[order]
            embeddings = self.embedding(captions)
            mean = encoder_out.mean(dim=1)
            h, c = self.init_h(mean), self.init_c(mean)
            decode_lengths = (lengths - 1).tolist()
            t_max = max(decode_lengths)
            predictions = torch.zeros(b, t_max, self.fc.out_features)
            alphas = torch.zeros(b, t_max, encoder_out.size(1))
            for t in range(t_max):
                bt = sum(n > t for n in decode_lengths)
                context, alpha = self.attention(encoder_out[:bt], h[:bt])
                context = torch.sigmoid(self.f_beta(h[:bt])) * context
                h, c = self.decode_step(torch.cat([embeddings[:bt, t], context], dim=1), (h[:bt], c[:bt]))
                predictions[:bt, t] = self.fc(self.dropout(h))
                alphas[:bt, t] = alpha
            return predictions, captions, decode_lengths, alphas

    torch.manual_seed(0)
    encoder, decoder = Encoder().eval(), DecoderWithAttention(CAPTION["dim"], len(word_map), dropout=CAPTION["dropout"])
    for p in encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=CAPTION["lr"])
    criterion = nn.CrossEntropyLoss()
    loaders = {
        split: torch.utils.data.DataLoader(CaptionDataset(split), batch_size=batch, shuffle=split == "train")
        for split in ("train", "val")
    }

    def loss_of(images, captions, lengths):
        predictions, captions, decode_lengths, alphas = decoder(encoder(images), captions, lengths)
        scores = pack_padded_sequence(predictions, decode_lengths, batch_first=True).data
        targets = pack_padded_sequence(captions[:, 1:], decode_lengths, batch_first=True).data
        return criterion(scores, targets) + CAPTION["alpha_c"] * ((1.0 - alphas.sum(dim=1)) ** 2).mean()

    for _ in range(epochs):
        decoder.train()
        for images, captions, lengths in loaders["train"]:
            loss = loss_of(images, captions, lengths)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(decoder.parameters(), CAPTION["clip"])
            optimizer.step()
        decoder.eval()
        with torch.no_grad():
            for images, captions, lengths in loaders["val"]:
                loss_of(images, captions, lengths)
    torch.save({"decoder": decoder.state_dict(), "encoder": encoder.state_dict()}, root / "peer-caption.pth.tar")


def peer_llm(root: Path, epochs: int, scale: int) -> None:
    """A plain Trainer + PEFT script (llm_throughput.py's): conversations tokenised with the chat template, loss on
    the answer, DataCollatorForSeq2Seq, LoRA r8 on q_proj,v_proj, `train_sampling_strategy="group_by_length"`."""
    import math

    sys.path.insert(0, str(HERE))
    import llm_throughput

    data = root / f"self_instruct_x{scale}.jsonl"
    rows = data.read_text(encoding="utf-8").splitlines()
    _, _, batch, _ = CASES["llm"]
    args = argparse.Namespace(
        model=str(root / "tiny-llama"),
        data=str(data),
        out=str(root / "peer-llm"),
        batch_size=batch,
        total_steps=epochs * math.ceil(len(rows) / batch),
        precision="no",
    )
    llm_throughput.run_trainer(args, llm_throughput.StepClock(), grouped=True)


# -- driver --------------------------------------------------------------------------------------------------


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", choices=[*CASES, "all"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=int, default=1, help="examples x this")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "dlkit-course-peers")
    parser.add_argument("--peer", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    ARGS = parser.parse_args()
    if ARGS.peer:
        import torch

        torch.set_num_threads(ARGS.threads)
        if ARGS.peer == "qa":
            peer_qa(ARGS.root, ARGS.epochs, ARGS.scale)
        elif ARGS.peer == "caption":
            peer_caption(ARGS.root, ARGS.epochs, ARGS.scale)
        elif ARGS.peer == "llm":
            peer_llm(ARGS.root, ARGS.epochs, ARGS.scale)
        else:
            peer_vit(ARGS.peer, ARGS.root, ARGS.epochs, ARGS.scale)
        return
    if ARGS.case is None:
        parser.error("name a case")
    ARGS.root.mkdir(parents=True, exist_ok=True)
    if ARGS.case == "all":
        print(json.dumps([bench(case, ARGS.root) for case in CASES], indent=2))
    else:
        print(json.dumps(bench(ARGS.case, ARGS.root), indent=2))


ARGS = argparse.Namespace(threads=1)

if __name__ == "__main__":
    main()
