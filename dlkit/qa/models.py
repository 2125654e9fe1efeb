"""The encoder + span head, loaded through `AutoModelForQuestionAnswering` from builtin:, a local folder or the Hub.

The trained model is saved as a plain `save_pretrained` folder (the head's weights are the model's own
`qa_outputs` layer; dropout has none), so `AutoModelForQuestionAnswering.from_pretrained` loads it anywhere.
`dlkit_qa.json` beside it records the head and the window settings that `qa eval`/`qa predict` reuse; the
window settings are also in config.json's `task_specific_params["question-answering"]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.core.errors import ConfigError, RunError, SourceError
from dlkit.core.progress import info, quiet_transformers
from dlkit.core.run import atomic_write_json
from dlkit.core.sources import resolve
from dlkit.core.weights import check_folder
from dlkit.qa.windows import check_fast_tokenizer

SETTINGS_FILE = "dlkit_qa.json"


class SpanQA(nn.Module):
    """A `*ForQuestionAnswering` model; with `head_dropout` > 0 its span head sees dropout first.

    Both heads are one linear layer from each token's hidden state to (start, end) logits; the
    "dropout-linear" head applies dropout to the encoder output before it, as the course's model does.
    """

    def __init__(self, qa_model: nn.Module, head_dropout: float = 0.0):
        super().__init__()
        if head_dropout and not isinstance(getattr(qa_model, "qa_outputs", None), nn.Linear):
            raise ConfigError(
                f"--head dropout-linear: {type(qa_model).__name__} has no linear `qa_outputs` "
                "span head; use --head linear"
            )
        self.qa_model = qa_model
        self.head_dropout = nn.Dropout(head_dropout)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> start and end logits, each (B, T)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if not self.head_dropout.p:
            out = self.qa_model(**inputs)
            return out.start_logits, out.end_logits
        hidden = self.qa_model.base_model(**inputs)[0]  # (B, T, H)
        logits = self.qa_model.qa_outputs(self.head_dropout(hidden))  # (B, T, 2)
        start, end = logits.unbind(dim=-1)
        return start.contiguous(), end.contiguous()

    def gradient_checkpointing_enable(self) -> None:
        self.qa_model.gradient_checkpointing_enable()


def model_location(spec: str) -> str:
    """A folder or Hub id that `from_pretrained` accepts, for builtin:, local and Hub sources alike."""
    source = resolve(spec, "model", flag="--model")
    if source.kind == "builtin":
        from dlkit.builtin import BUILTINS

        return str(BUILTINS[source.value].load())
    return source.value


def check_and_load(spec: str, trust_remote_code: bool = False) -> tuple[str, Any]:
    """Resolve --model and load its tokenizer, refusing one that cannot give character offsets."""
    location = model_location(spec)
    tokenizer = load_tokenizer(location, spec, trust_remote_code)
    check_fast_tokenizer(tokenizer, spec)
    return location, tokenizer


def load_tokenizer(location: str, spec: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise SourceError(f"--model {spec}: no usable tokenizer ({_first_line(exc)})") from None


def load_qa_model(location: str, spec: str, trust_remote_code: bool = False) -> nn.Module:
    """`AutoModelForQuestionAnswering`; a plain encoder checkpoint gets a freshly initialised span head."""
    from transformers import AutoModelForQuestionAnswering

    if Path(location).is_dir():
        check_folder(location)
    try:
        with quiet_transformers():  # we report the one expected notice (a fresh span head) ourselves
            model, loaded = AutoModelForQuestionAnswering.from_pretrained(
                location, trust_remote_code=trust_remote_code, output_loading_info=True
            )
    except ValueError as exc:
        raise ConfigError(
            f"--model {spec}: no question-answering head for this architecture ({_first_line(exc)})"
        ) from None
    except OSError as exc:
        raise SourceError(f"--model {spec}: cannot load the model ({_first_line(exc)})") from None
    missing = sorted(loaded.get("missing_keys", []))
    if missing:
        info(f"{spec}: newly initialised (train them): {', '.join(missing)}")
    return model


def save_trained(model: SpanQA, tokenizer: Any, path: Path, settings: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    # the window settings travel in config.json too, so plain transformers code can cut contexts into the
    # windows the model was trained on
    model.qa_model.config.task_specific_params = {
        "question-answering": {k: settings[k] for k in ("max_length", "doc_stride", "max_answer_length", "allow_null")}
    }
    tokenizer.model_max_length = settings["max_length"]
    with quiet_transformers():
        model.qa_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    atomic_write_json(path / SETTINGS_FILE, settings)


def load_trained(model_dir: Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The model, tokenizer and settings a `qa train` run saved."""
    settings_path = model_dir / SETTINGS_FILE
    if not settings_path.is_file():
        raise RunError(f"{model_dir} has no trained QA model ({SETTINGS_FILE} missing); did training finish?")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(str(model_dir), str(model_dir))
    model = load_qa_model(str(model_dir), str(model_dir))
    return SpanQA(model).eval(), tokenizer, settings


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
