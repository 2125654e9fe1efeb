"""`dlkit charrnn eval` and `sample`: a trained run's loss, bits per character and perplexity on a text, and
characters sampled from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.charrnn import data, models
from dlkit.charrnn.config import EvalConfig, SampleConfig
from dlkit.charrnn.task import GROUP, LN2, loss_metrics
from dlkit.core.config import checked
from dlkit.core.errors import ConfigError, DataError
from dlkit.core.progress import track
from dlkit.core.run import Run
from dlkit.core.splits import scored, split_fields, split_in_name


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_run_model(run_dir: str | Path) -> tuple[Run, nn.Module, models.ModelSpec, data.Vocab]:
    run = Run.open(run_dir, group=GROUP)
    model, spec, chars = models.load(run.model_dir)
    return run, model.to(_device()), spec, data.Vocab(chars)


@torch.no_grad()
def text_loss(model: nn.Module, ids: np.ndarray, block_size: int, batch_size: int = 64) -> float:
    """Mean next-character cross-entropy over every character of `ids` after the first, read in
    non-overlapping blocks of `block_size` (the context restarts at each block, as in validation)."""
    device = next(model.parameters()).device
    starts = list(range(0, len(ids) - 1, block_size))
    total, count = 0.0, 0
    full = [s for s in starts if s + block_size + 1 <= len(ids)]
    tail = [s for s in starts if s + block_size + 1 > len(ids)]
    batches = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[s] for s in tail]

    for batch_starts in track(batches, "evaluating", total=len(batches)):
        chunk = torch.from_numpy(np.stack([ids[s : s + block_size + 1] for s in batch_starts]).astype(np.int64))
        chunk = chunk.to(device)
        logits, _ = model(chunk[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum").item()
        count += chunk[:, 1:].numel()
    return total / count


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Loss, bits per character and perplexity of a trained run on a text: the run's held-out validation
    characters by default, its training characters only with split="train" (train_* metrics), or --data.

    Writes eval.json into the run and merges the metrics into its metrics.json.
    """
    checked(cfg)
    data_spec, encoding, batch_size, split = cfg.data, cfg.encoding, cfg.batch_size, cfg.split
    run, model, spec, vocab = load_run_model(cfg.run)
    config = run.read_config()
    name = "test"
    if data_spec is None:
        cfg_encoding = config.get("encoding", "utf-8")
        text = data.load_text(config["data"], cfg_encoding)
        splits = data.split_text(text, config["block_size"], config.get("val_fraction", 0.1), vocab=vocab)
        record = data.split_record(text, splits, config.get("val_fraction", 0.1))
        name = scored(run, split, record.ids).name
        ids = np.asarray(splits.train if name == "train" else splits.val)
        source = f"{config['data']} ({name} split)"
    else:
        text = data.load_text(data_spec, encoding or "utf-8")
        if len(text.text) < 2:
            raise DataError(f"--data {data_spec} has {len(text.text)} character; at least 2 are needed")
        unknown = vocab.unknown(text.text)
        if unknown:
            raise DataError(
                f"--data {data_spec} has {len(unknown)} characters the model never saw: "
                f"{data.describe_chars(unknown)}; evaluate on text with the training characters"
            )
        ids, source = vocab.encode(text.text), data_spec
    loss = text_loss(model, ids, spec.block_size, batch_size)
    prefix = "train" if name == "train" else "test"
    result = {
        "data": source,
        **split_fields(name if data_spec is None else split_in_name(data_spec), int(len(ids) - 1)),
        "chars": int(len(ids) - 1),
        **loss_metrics(loss, prefix),
    }
    if text.entropy_rate is not None:
        result["optimal_bpc"] = text.entropy_rate / LN2
    run.write_json("eval.json", result)
    run.write_metrics({**run.read_metrics(), **{k: v for k, v in result.items() if k.startswith(prefix + "_")}})
    return result


def sample(cfg: SampleConfig) -> Iterator[str]:
    """Yield the prompt, then `num_chars` sampled characters one at a time."""
    checked(cfg)
    prompt, num_chars, temperature, top_k = cfg.prompt, cfg.num_chars, cfg.temperature, cfg.top_k
    run, model, spec, vocab = load_run_model(cfg.run)
    if not prompt:
        prompt = "\n" if "\n" in vocab.chars else vocab.chars[0]
    unknown = vocab.unknown(prompt)
    if unknown:
        raise ConfigError(
            f"--prompt has characters that are not in the run's vocabulary: {data.describe_chars(unknown)}"
        )
    generator = torch.Generator().manual_seed(cfg.seed)
    yield prompt
    for i in models.stream(model, vocab.encode(prompt).tolist(), num_chars, temperature, top_k or None, generator):
        yield vocab.chars[i]
