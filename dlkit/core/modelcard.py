"""Model cards: the README.md of every final model folder, a Hugging Face Hub repository as it stands.

The card is built from the run folder: config.json (the effective config and the command), metrics.json (the
eval metrics, each under the split it scored: model-index), splits.json (split sizes), plus what only the
group knows (`CardInfo`: the Hub pipeline tag, the library that loads the folder, how to load it). The YAML
metadata is written with huggingface_hub's `ModelCardData`, so the Hub and `ModelCard.load` read it back.

`base_model` and `datasets` name Hub ids only (the Hub refuses other values); a builtin or local base or
dataset is named in the text. No absolute path of the training machine goes into a card.

`--push-to-hub REPO` uploads the folder with huggingface_hub; `check_push` refuses it before any work when
the Hub cannot be reached or no token is set.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlkit.core.config import META_KEY
from dlkit.core.errors import ConfigError, SourceError
from dlkit.core.progress import info
from dlkit.core.run import atomic_write_text
from dlkit.core.sources import HUB_ID
from dlkit.core.splits import read_splits

if TYPE_CHECKING:
    from dlkit.core.run import Run

CARD_FILE = "README.md"
SPLIT_PREFIXES = {"val_": "validation", "test_": "test"}  # metrics.json prefix -> the split it scored
SIZE_WORDS = (
    "examples",
    "images",
    "questions",
    "windows",
    "chars",
    "conversations",
    "pairs",
    "captions",
    "sentences",
    "size",
)  # val_examples, test_images...: how much was scored, not a metric
HUB_TIMEOUT_S = 5.0


@dataclass
class CardInfo:
    """What a group knows about its final model folder that the run folder does not say."""

    what: str = "model"  # completes "A ... trained with dlkit": e.g. "LoRA adapter for a causal LM"
    pipeline_tag: str | None = None  # the Hub's task: text-generation, image-classification, ...
    library_name: str = "dlkit"  # what loads the folder: peft, transformers, open_clip (dlkit: its own format)
    usage: str = ""  # code that loads the folder
    usage_language: str = "python"  # bash for a folder only dlkit's own commands read
    tags: list[str] = field(default_factory=list)
    base_relation: str | None = None  # the Hub's base_model_relation: adapter, finetune, merge
    base: str | None = None  # the base model as given; None: the run's --model; "": none (trained from scratch)
    hub_base: bool = True  # False where `base` is no Hub id even when it looks like one (open_clip architectures)


def hub_id(spec: Any, kind: str) -> str | None:
    """`spec` when it names a Hub repository (not a builtin, not a local path), else None."""
    from dlkit.core.sources import resolve

    if not isinstance(spec, str) or not spec.strip():
        return None
    try:
        source = resolve(spec.removeprefix("hf-hub:"), "data" if kind == "data" else "model", check_hub=False)
    except SourceError:
        return None
    return source.value if source.kind == "hub" else None


def portable(value: Any) -> Any:
    """`value` with every absolute path replaced by its last part: a card travels, this machine's folders do not."""
    if isinstance(value, str):
        if os.path.isabs(value) and len(value) > 1:
            return Path(value).name
        return value
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def source_label(spec: Any) -> str:
    """How the card names a --model/--data value: as given, a local path by its folder or file name."""
    return str(portable(spec)) if spec is not None else "?"


def split_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """split -> {metric: value} of metrics.json's held-out metrics (val_* and test_*; sizes left out)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        for prefix, split in SPLIT_PREFIXES.items():
            name = key.removeprefix(prefix)
            if key.startswith(prefix) and not name.endswith(SIZE_WORDS):
                out.setdefault(split, {})[name] = float(value)
    return out


def split_sizes(run: Run, metrics: dict[str, Any]) -> dict[str, int]:
    """split -> examples: how many an eval scored (metrics.json's val_examples, test_images...), else the split's
    size in splits.json."""
    recorded = read_splits(run)
    sizes = {name: len(ids) for name, ids in recorded.ids.items()} if recorded is not None else {}
    for prefix, split in SPLIT_PREFIXES.items():
        count = next(
            (
                v
                for k, v in metrics.items()
                if k.startswith(prefix) and k.endswith(SIZE_WORDS) and isinstance(v, int) and not isinstance(v, bool)
            ),
            None,
        )
        if count is not None:
            sizes[split] = count
    return sizes


def build_card(run: Run, info: CardInfo) -> Any:
    """The run's model card as a huggingface_hub `ModelCard` (metadata and text)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config = run.read_config()
    meta = config.pop(META_KEY, {})
    metrics = run.read_metrics()
    group = meta.get("group") or run.group
    method = next((str(config[k]) for k in ("method", "arch", "head", "image_encoder") if config.get(k)), "")
    base = info.base if info.base is not None else config.get("model")
    base_id = hub_id(base, "model") if info.hub_base else None
    data_id = hub_id(config.get("data"), "data")
    dataset = data_id or source_label(config.get("data"))
    by_split = split_metrics(metrics)
    sizes = split_sizes(run, metrics)
    task = info.pipeline_tag or "other"
    results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=name,
            metric_name=f"{split} {name}",
            metric_value=value,
        )
        for split, values in by_split.items()
        for name, value in values.items()
    ]
    extra: dict[str, Any] = {"base_model_relation": info.base_relation} if base_id and info.base_relation else {}
    data = ModelCardData(
        base_model=base_id,
        library_name=info.library_name,
        pipeline_tag=info.pipeline_tag,
        tags=list(dict.fromkeys(["dlkit", group, *([method] if method else []), *info.tags])),
        datasets=[data_id] if data_id else None,
        model_name=run.dir.name,
        eval_results=results or None,
        **extra,
    )
    text = _card_text(run, info, config, meta, metrics, base, dataset, by_split, sizes, method, group)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def write_card(folder: Path, run: Run, info: CardInfo) -> Path:
    """README.md in `folder` (replacing the template card a library may have written there)."""
    path = Path(folder) / CARD_FILE
    atomic_write_text(path, str(build_card(run, info)))
    return path


def _card_text(
    run: Run,
    info: CardInfo,
    config: dict[str, Any],
    meta: dict[str, Any],
    metrics: dict[str, Any],
    base: Any,
    dataset: str,
    by_split: dict[str, dict[str, float]],
    sizes: dict[str, int],
    method: str,
    group: str,
) -> str:
    versions = meta.get("versions", {})
    base_line = f"`{source_label(base)}`" if base else "none (trained from scratch)"
    if str(base).startswith("builtin:"):
        base_line += " (a tiny model dlkit generates: `dlkit.builtin.BUILTINS` rebuilds it bit for bit)"
    lines = [
        f"# {run.dir.name}",
        "",
        f"A {info.what} trained with dlkit {versions.get('dlkit', '')} (`dlkit {group} train`"
        f"{f', method {method}' if method else ''}).".replace("  ", " "),
        "",
        f"- **Base model:** {base_line}",
        f"- **Training data:** `{dataset}`",
    ]
    rule = meta.get("splits", {}).get("rule")
    if sizes:
        lines.append(
            "- **Splits:** "
            + ", ".join(f"{name} {size}" for name, size in sizes.items())
            + (f" ({rule})" if rule else "")
        )
    lines += ["", "## Results", ""]
    if by_split:
        lines += ["| split | examples | metric | value |", "| --- | ---: | --- | ---: |"]
        for split, values in by_split.items():
            lines += [f"| {split} | {sizes.get(split, '')} | {name} | {value:.4g} |" for name, value in values.items()]
    else:
        lines.append("No held-out split was scored during training.")
    lines += ["", "## Training", "", _training_line(metrics), ""]
    command = meta.get("command")
    if command:
        lines += ["Command:", "", "```bash", _portable_command(command), "```", ""]
    effective = {k: portable(v) for k, v in config.items()}
    lines += [
        "Effective config (the run's config.json, local paths by name; `--config` takes it):",
        "",
        "```json",
        json.dumps(effective, indent=2, ensure_ascii=False, default=str),
        "```",
        "",
    ]
    if info.usage:
        lines += ["## How to use", "", f"```{info.usage_language}", info.usage.strip(), "```", ""]
    if versions:
        lines += ["## Framework versions", ""] + [f"- {name} {version}" for name, version in versions.items()]
    return "\n".join(lines).rstrip() + "\n"


def _training_line(metrics: dict[str, Any]) -> str:
    def number(key: str, fmt: str = ",") -> str:
        value = metrics.get(key)
        return format(value, fmt) if isinstance(value, int | float) else "?"

    return (
        f"{number('steps')} optimizer steps ({number('epochs')} complete epochs) in "
        f"{number('train_seconds', '.1f')} s on {number('processes')} process(es); "
        f"{number('trainable_params')} of {number('total_params')} parameters trained "
        f"({number('trainable_pct', '.3g')}%). Status: {metrics.get('status', '?')}."
    )


def _portable_command(command: str) -> str:
    try:
        return shlex.join(portable(shlex.split(command)))
    except ValueError:  # not shell words: shown as recorded
        return command


# -- the Hub -----------------------------------------------------------------------------------------


def check_push(repo: str | None, flag: str = "--push-to-hub") -> None:
    """Before any work: `repo` is a Hub repository id, the Hub answers, and a token is set. One line otherwise."""
    if not repo:
        return

    if "/" not in repo or not HUB_ID.match(repo):
        raise ConfigError(f"{flag} {repo}: expected a Hub repository id, NAMESPACE/NAME (e.g. me/my-lora)")
    hint = "train without it and upload later with `hf upload REPO RUN/checkpoints/final`"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise ConfigError(f"{flag} {repo}: the Hub is disabled (HF_HUB_OFFLINE); {hint}")
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().repo_info(repo, repo_type="model", timeout=HUB_TIMEOUT_S)
    except HfHubHTTPError:
        pass  # the Hub answered (a repository not there yet is created by the upload)
    except Exception as exc:  # connection refused, DNS failure, timeout, proxy errors...
        raise ConfigError(
            f"{flag} {repo}: the Hugging Face Hub cannot be reached ({type(exc).__name__}), so this "
            f"machine looks offline; {hint}"
        ) from None
    if get_token() is None:
        raise ConfigError(f"{flag} {repo}: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN")


def push_folder(folder: Path, repo: str) -> str:
    """Upload `folder` (a final model folder with its card) to the Hub model repository `repo`; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo,
        repo_type="model",
        commit_message=f"Upload {Path(folder).name} with dlkit",
    )
    url = getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo}"
    info(f"pushed {folder} to {url}")
    return str(url)
