"""`dlkit qa train`: the QA Task for the engine, and the logits -> spans -> EM/F1 path shared with eval."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dlkit.core.config import checked
from dlkit.core.engine import gather
from dlkit.core.modelcard import CardInfo
from dlkit.core.progress import info, warn
from dlkit.core.run import Run
from dlkit.core.splits import DataSplits, record_splits
from dlkit.core.task import Task
from dlkit.metrics import squad_scores
from dlkit.metrics.qa import no_answer_share
from dlkit.qa.config import QAConfig, WindowConfig
from dlkit.qa.data import LoadReport, QAExample, WindowDataset, collate_windows, question_id, split_examples
from dlkit.qa.models import SpanQA, check_and_load, load_qa_model, save_trained
from dlkit.qa.windows import Span, Window, best_spans, make_windows

SAMPLE_QUESTIONS = 20
COLLAPSED_PCT = 95.0  # at least this share of "no answer" predictions: the model answers nothing
# the official v2 script's HasAns/NoAns scores and the counts behind them
SUBSETS = ("has_ans_exact", "has_ans_f1", "no_ans_exact", "no_ans_f1", "has_ans_total", "no_ans_total", "total")


def span_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean of the start and end cross-entropies over each window's own tokens, plus the (B, T) start and
    end logits. Padding is never an answer and is left out of the softmax, so the loss of a window does not
    depend on how long the other windows of its batch are (nor on how batches are split over processes)."""
    start_logits, end_logits = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    padding = batch["attention_mask"].eq(0)

    def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.masked_fill(padding, torch.finfo(logits.dtype).min), target)

    loss = (
        cross_entropy(start_logits, batch["start_positions"]) + cross_entropy(end_logits, batch["end_positions"])
    ) / 2
    return loss, start_logits, end_logits


def window_logits(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
) -> list[tuple[int, list[float], list[float]]]:
    """(window index, start logits, end logits) per row, trimmed to the window's own length."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    starts, ends = start_logits.float().cpu().tolist(), end_logits.float().cpu().tolist()
    return [
        (int(i), s[:n], e[:n]) for i, s, e, n in zip(batch["window_index"].tolist(), starts, ends, lengths, strict=True)
    ]


def decode(
    examples: list[QAExample],
    windows: list[Window],
    rows: list[tuple[int, list[float], list[float]]],
    cfg: WindowConfig,
    allow_null: bool,
    top_k: int = 1,
) -> dict[str, list[Span]]:
    """Spans per question id from per-window logits (rows in any order)."""
    by_window = {index: (s, e) for index, s, e in rows}
    missing = [0.0]
    starts = [by_window.get(i, (missing, missing))[0] for i in range(len(windows))]
    ends = [by_window.get(i, (missing, missing))[1] for i in range(len(windows))]
    return best_spans(examples, windows, starts, ends, cfg, allow_null, top_k)


def score(examples: list[QAExample], spans: dict[str, list[Span]], v2: bool | None = None) -> dict[str, float]:
    """EM/F1 as the official SQuAD script of the data's version computes them (v2: also HasAns/NoAns), and the
    share of "no answer" predictions."""
    predictions = {qid: found[0].text for qid, found in spans.items()}
    scores = squad_scores(predictions, {e.id: list(e.answers) for e in examples}, v2)
    return {**scores, "no_answer_pct": no_answer_share(list(predictions.values()))}


def collapse_warning(scores: dict[str, float], prefix: str, split: str) -> None:
    """One line when the model answers "no answer" to nearly everything: its EM/F1 then only count the
    unanswerable questions it got right by saying nothing."""
    share = scores.get(f"{prefix}no_answer_pct", 0.0)
    if share < COLLAPSED_PCT:
        return
    unanswerable = scores.get(f"{prefix}no_ans_total", 0) / max(scores.get(f"{prefix}total", 1), 1)
    warn(
        f"{share:.0f}% of the {split} predictions are 'no answer': EM {scores.get(f'{prefix}exact_match', 0):.1f}"
        f" / F1 {scores.get(f'{prefix}f1', 0):.1f} is about the share of unanswerable questions "
        f"({unanswerable:.0%}), not answers found (answerable F1 {scores.get(f'{prefix}has_ans_f1', 0):.1f})"
    )


class QATask(Task):
    """Encoder + span head on SQuAD-format windows."""

    def __init__(self, cfg: QAConfig):
        self.cfg = cfg
        self.location, self.tokenizer = check_and_load(cfg.model, cfg.trust_remote_code)
        self.report = LoadReport()
        self.splits, self.split_rule = split_examples(cfg.data, cfg.val_fraction, cfg.seed, cfg.strict, self.report)
        train, val = self.splits["train"], self.splits["validation"]
        if cfg.max_eval_examples:
            val = val[: cfg.max_eval_examples]
        self.train_examples, self.val_examples = train, val
        self.allow_null = any(not e.answerable for e in train)
        self.train_windows = make_windows(self.tokenizer, train, cfg)
        self.val_windows = make_windows(self.tokenizer, val, cfg)
        self.skipped_items = self.report.skipped
        self.last_spans: dict[str, list[Span]] = {}
        self.arch = ""
        info(
            f"qa: {len(train)} training questions -> {len(self.train_windows)} windows, {len(val)} validation "
            f"questions -> {len(self.val_windows)} windows; {self.report.repaired} answer offsets repaired, "
            f"{self.report.skipped} questions skipped"
            + (" (SQuAD v2: unanswerable questions)" if self.allow_null else "")
        )

    def build_model(self) -> nn.Module:
        dropout = self.cfg.head_dropout if self.cfg.head == "dropout-linear" else 0.0
        qa_model = load_qa_model(self.location, self.cfg.model, self.cfg.trust_remote_code)
        self.arch = type(qa_model).__name__
        return SpanQA(qa_model, dropout)

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        return WindowDataset(self.train_windows), WindowDataset(self.val_windows) if self.val_windows else None

    def collate(self, items: list[tuple[int, Window]]) -> dict[str, torch.Tensor]:
        return collate_windows(items, self.tokenizer.pad_token_id or 0)

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, _, _ = span_loss(model, batch)
        return loss, {"tokens": batch["attention_mask"].sum()}  # items: windows (the default, examples)

    def evaluate(self, model: nn.Module, loader: Any, accel: Any) -> dict[str, float]:
        total, weight, rows = 0.0, 0, []
        for batch in loader:
            loss, start_logits, end_logits = span_loss(model, batch)
            total += loss.item() * len(batch["input_ids"])
            weight += len(batch["input_ids"])
            rows.extend(window_logits(start_logits, end_logits, batch))
        sums = torch.tensor([total, float(weight)], dtype=torch.float64, device=accel.device)
        if accel.num_processes > 1:
            sums = accel.reduce(sums, reduction="sum")
        rows = gather(accel, rows)
        self.last_spans = decode(self.val_examples, self.val_windows, rows, self.cfg, self.allow_null)
        scores = score(self.val_examples, self.last_spans, self.allow_null)
        metrics = {
            "val_loss": (sums[0] / sums[1].clamp_min(1)).item(),
            "val_exact_match": scores["exact_match"],
            "val_f1": scores["f1"],
            "val_no_answer_pct": scores["no_answer_pct"],
        }
        metrics.update({f"val_{k}": scores[k] for k in SUBSETS if k in scores})
        return metrics

    def on_eval(self, model: nn.Module, run: Run, step: int) -> None:
        """A few validation questions with the gold and predicted answers, refreshed at each eval."""
        samples = []
        for example in self.val_examples[:SAMPLE_QUESTIONS]:
            span = self.last_spans.get(example.id, [Span("", 0.0, -1, -1)])[0]
            samples.append(
                {
                    "id": example.id,
                    "question": example.question,
                    "gold": example.answers,
                    "predicted": span.text,
                    "probability": round(span.probability, 4),
                }
            )
        run.write_json("samples/val_predictions.json", {"step": step, "samples": samples})

    def save_model(self, model: nn.Module, path: Any) -> None:
        settings = {
            "head": self.cfg.head,
            "head_dropout": self.cfg.head_dropout,
            "base_model": self.cfg.model,
            "allow_null": self.allow_null,
            "max_length": self.cfg.max_length,
            "doc_stride": self.cfg.doc_stride,
            "max_answer_length": self.cfg.max_answer_length,
            "n_best": self.cfg.n_best,
        }
        save_trained(model, self.tokenizer, path, settings)

    def card_info(self) -> CardInfo:
        return CardInfo(
            what=f"extractive question-answering model ({self.cfg.head} span head)",
            pipeline_tag="question-answering",
            library_name="transformers",
            base_relation="finetune",
            usage="from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n\n"
            "model = AutoModelForQuestionAnswering.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "# config.json's task_specific_params['question-answering'] holds the windows it was "
            "trained on",
        )

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.cfg.head,
            "arch": self.arch,
            "train_questions": len(self.train_examples),
            "train_windows": len(self.train_windows),
            "val_questions": len(self.val_examples),
            "repaired_offsets": self.report.repaired,
            "squad_v2": self.allow_null,
        }


def train(cfg: QAConfig) -> dict[str, Any]:
    """Build the task, fit it with the engine, return metrics.json."""
    from dlkit.core.engine import fit

    checked(cfg)
    task = QATask(cfg)
    run = Run.create("qa", cfg, default_name=f"{cfg.head}")
    ids = {name: [question_id(e) for e in examples] for name, examples in task.splits.items()}
    record_splits(run, DataSplits(ids, task.split_rule), resume=cfg.resume)
    metrics = fit(task, cfg, run)
    collapse_warning(metrics, "val_", "validation")
    return metrics
