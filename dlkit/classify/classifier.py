"""What every classification group shares (vit, adapter): logits -> loss, validation metrics, the test report
written into the run folder (per-class CSV, confusion matrix PNG, misclassified examples), label splits and
top-k prediction tables.

A group's Task supplies the forward pass (batch -> logits (B, K)) and its data; these functions do the rest,
so an image classifier and a text classifier are judged by exactly the same numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dlkit.core.config import ShardingConfig, cache_features_opt, opt, run_field
from dlkit.core.errors import DataError

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from dlkit.core.run import Run

TOP_K = 5
MAX_MISCLASSIFIED = 200  # rows kept in samples/misclassified.csv, most confident mistakes first


# -- labels and splits -----------------------------------------------------------------------------


def label_maps(names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """id2label / label2id for a model config, from the class names in index order."""
    return {i: name for i, name in enumerate(names)}, {name: i for i, name in enumerate(names)}


def check_classes(names: Sequence[str], where: str) -> None:
    """A classifier needs at least two classes; one is a data mistake worth a clear sentence."""
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise DataError(f"{where} has {len(names)} class ({found}); a classifier needs at least 2 classes")


VAL_FRACTION_HELP = (
    "Share of each class of train held out for validation when the data has no validation split "
    "(a test split is never used for validation)."
)


@dataclass
class ClassifierConfig(ShardingConfig):
    """The split fields of a classifier's `train` (vit, adapter): the validation share and seeded subsets."""

    val_fraction: float = opt(0.1, VAL_FRACTION_HELP, above=0, below=1)
    max_train_samples: int | None = opt(None, "Use at most this many training examples (a seeded subset).", min=1)
    max_eval_samples: int | None = opt(
        None, "Use at most this many validation examples, and as many test examples (seeded subsets).", min=1
    )
    cache_features: bool = cache_features_opt()

    def subset(self, split: Any, limit: int | None) -> Any:
        """A seeded subset of at most `limit` examples of `split` (all of them for None)."""
        return split.select(subsample(list(range(len(split))), limit, self.seed))


class EvalSettings(Protocol):
    """The fields of the `eval` config `classifier_configs` makes (for type checkers: it is made at run time)."""

    run: str
    batch_size: int
    split: str | None


class PredictSettings(Protocol):
    """The fields every `predict` config `classifier_configs` makes has; the inputs' field is the group's."""

    run: str
    top_k: int


def classifier_configs(group: str, inputs: str, inputs_field: Any, noun: str) -> tuple[type, type]:
    """The configs of a classifier group's `eval` and `predict` (vit, adapter): the same fields in every group,
    but the run's group and what `predict` classifies (`inputs`, a list field: images, texts)."""
    from dataclasses import make_dataclass

    split_help = (
        "Split to score: test (the default when the data has one), validation (the examples that picked "
        "the checkpoint; the default otherwise) or train (only when asked; train_* metrics)."
    )
    evaluate = make_dataclass(
        "EvalConfig",
        [
            ("run", str, run_field(group)),
            ("batch_size", int, opt(64, "Examples per forward pass.", min=1)),
            ("split", str | None, opt(None, split_help)),
        ],
        namespace={"command": (group, "eval")},
    )
    predict = make_dataclass(
        "PredictConfig",
        [
            ("run", str, run_field(group)),
            (inputs, list[str], inputs_field),
            ("top_k", int, opt(TOP_K, f"Labels to show per {noun}.", min=1)),
        ],
        namespace={"command": (group, "predict")},
    )
    evaluate.__doc__, predict.__doc__ = f"`dlkit {group} eval`.", f"`dlkit {group} predict`."
    return evaluate, predict


def check_same_classes(data: str, now: Sequence[str], trained: Sequence[str], run_dir: Path) -> None:
    """eval reads --data again: its classes must still be the ones the run's model was trained on."""
    if list(now) != list(trained):

        def show(names: Sequence[str]) -> str:
            return f"{list(names)}" if len(names) <= 5 else f"{list(names[:5])}..."

        raise DataError(
            f"--data {data} now has classes {show(now)}, but the model in {run_dir} was trained on {show(trained)}"
        )


VALIDATION_NAMES = ("validation", "val", "valid", "dev")  # a dataset's own validation split, by its name
TEST_NAME = "test"
HELD_OUT = "held-out"  # in val_split when validation is a share of train


def named_splits(available: Iterable[str]) -> tuple[str | None, str | None]:
    """The data's own validation and test splits among `available` (folder, file or Hub split names)."""
    names = list(available)
    return next((s for s in VALIDATION_NAMES if s in names), None), TEST_NAME if TEST_NAME in names else None


def leave_out_test(reason: str) -> None:
    """A test split without labels (GLUE's test files, Hub labels of -1, a test/ of loose images) is not an
    error: it is left out, with `reason` in one warning line."""
    from dlkit.core.progress import warn

    warn(f"{reason}: it is left out, and eval scores the validation split")


@dataclass
class ClassifierData:
    """A classifier's splits with the class names: train, validation (the data's own validation split, else a
    seeded share of train: a test split never picks checkpoints or stops training) and the data's test split
    when it has a labelled one, which only `eval` scores. `*_split` say where the held-out examples came from.
    Each split type has `select(indices)`, `labels` and `example_ids()`."""

    train: Any
    val: Any
    label_names: list[str]
    val_split: str
    test: Any = None
    test_split: str = ""

    def ids(self) -> dict[str, list[str]]:
        """Example ids per split, for splits.json and every eval's check."""
        from dlkit.core.splits import TEST, TRAIN, VALIDATION

        ids = {TRAIN: self.train.example_ids(), VALIDATION: self.val.example_ids()}
        if self.test is not None:
            ids[TEST] = self.test.example_ids()
        return ids

    def sizes(self) -> dict[str, int]:
        """For a run's summary: examples per split (test_samples 0 when the data has no test split)."""
        return {
            "train_samples": len(self.train),
            "val_samples": len(self.val),
            "test_samples": len(self.test) if self.test is not None else 0,
        }

    def rule(self, cfg: ClassifierConfig) -> str:
        """How the splits were cut, for splits.json and config.json."""
        rule = (
            f"seeded: {cfg.val_fraction:.0%} of each class of train held out for validation (seed {cfg.seed})"
            if HELD_OUT in self.val_split
            else f"validation from the data's {self.val_split} split"
        )
        if self.test is not None:
            rule += f"; test from the data's {self.test_split} split"
        if cfg.max_train_samples or cfg.max_eval_samples:
            rule += (
                f"; seeded subsets of at most {cfg.max_train_samples} train / {cfg.max_eval_samples} "
                "validation and test"
            )
        return rule


Data = TypeVar("Data", bound=ClassifierData)


def cut_splits(cfg: ClassifierConfig, data: Data, train_split: str, where: str) -> Data:
    """`data` as read (data.val None when the data has no validation split) -> the splits a run uses: a seeded
    per-class share of train held out for validation when needed, then the --max-*-samples subsets.
    `train_split` names the train split in reports, `where` the --data value in errors."""
    train, val, val_split = data.train, data.val, data.val_split
    if val is None:
        train_idx, val_idx = holdout_split(train.labels, cfg.val_fraction, cfg.seed, where=where)
        train, val = train.select(train_idx), train.select(val_idx)
        val_split = f"{HELD_OUT} {cfg.val_fraction:.0%} of {train_split}"
    test = None if data.test is None else cfg.subset(data.test, cfg.max_eval_samples)
    return replace(
        data,
        train=cfg.subset(train, cfg.max_train_samples),
        val=cfg.subset(val, cfg.max_eval_samples),
        val_split=val_split,
        test=test,
    )


@dataclass
class ScoredPart:
    """What `eval` scores of a classifier's data: a split's examples the model did not train on."""

    name: str  # the run's split: "test" or "validation", or "train" when asked for by name
    source: str  # where those examples came from, for the report: "train", or the data's test/validation split
    examples: Any  # the group's split type, narrowed to the scored examples
    left_out: int  # examples of that split left out because the model trained on them


def scored_part(
    run: Run, requested: str | None, data: ClassifierData, trained_classes: Sequence[str], data_arg: str
) -> ScoredPart:
    """Check that `data` still has the run's classes, then pick the split to score (test when the data has one,
    else validation; train only by name) and keep its held-out examples (dlkit.core.splits.scored)."""
    from dlkit.core.splits import TEST, TRAIN, VALIDATION, scored

    check_same_classes(data_arg, data.label_names, trained_classes, run.dir)
    part = scored(run, requested, data.ids())
    pool, source = {
        TRAIN: (data.train, TRAIN),
        VALIDATION: (data.val, data.val_split),
        TEST: (data.test, data.test_split),
    }[part.name]
    return ScoredPart(part.name, source, pool.select(part.keep), part.left_out)


def holdout_split(
    labels: Sequence[int], fraction: float, seed: int, where: str | None = None
) -> tuple[list[int], list[int]]:
    """(train, val) indices: `fraction` of each class held out, at least one example of a class with two or more,
    so small classes appear in both sets.
    With `where` (the data it came from), holding out nothing is a DataError instead of an empty split."""
    import random

    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train, val = [], []
    for indices in by_class.values():
        rng.shuffle(indices)
        num_val = max(1, round(len(indices) * fraction)) if len(indices) > 1 else 0
        val.extend(indices[:num_val])
        train.extend(indices[num_val:])
    if where is not None and not val:
        raise DataError(
            f"--data {where}: holding out {fraction:.0%} of each class leaves no validation example "
            f"({len(labels)} examples in {len(by_class)} classes); add examples, raise --val-fraction "
            "or give a validation split"
        )
    return sorted(train), sorted(val)


def subsample(indices: list[int], limit: int | None, seed: int) -> list[int]:
    """At most `limit` indices, drawn with a fixed seed (for --max-train-samples / --max-eval-samples)."""
    import random

    if limit is None or len(indices) <= limit:
        return indices
    return sorted(random.Random(seed).sample(indices, limit))


# -- training and validation -----------------------------------------------------------------------


def cross_entropy_step(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss and the batch accuracy (logged by the engine next to the loss)."""
    import torch.nn.functional as F

    loss = F.cross_entropy(logits.float(), labels)  # logits (B, K), labels (B,)
    accuracy = (logits.argmax(-1) == labels).float().mean()  # a tensor: the engine reads it at log time
    return loss, {"accuracy": accuracy}


def collect_logits(
    forward: Callable[[Any], torch.Tensor],
    loader: Any,
    accel: Accelerator | None = None,
    description: str = "evaluating",
) -> tuple[Any, Any]:
    """Logits (N, K) and labels (N,) over a whole loader, from every process, as float/int64 CPU tensors."""
    import torch

    from dlkit.core.progress import track

    rows: list[list[float]] = []
    labels: list[int] = []
    with torch.no_grad():
        for batch in track(loader, description, total=len(loader) if hasattr(loader, "__len__") else None):
            logits = forward(batch)
            rows.extend(logits.float().cpu().tolist())
            labels.extend(batch["labels"].cpu().tolist())
    if accel is not None and accel.num_processes > 1:
        from dlkit.core.engine import gather

        pairs = gather(accel, list(zip(rows, labels, strict=True)))
        rows, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    return torch.tensor(rows, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "val_") -> dict[str, float]:
    """Loss, accuracy, macro F1; top-5 when there are more than 5 classes; binary P/R/F1 for 2 classes."""
    import torch.nn.functional as F

    from dlkit.metrics import classification_report, topk_accuracy

    num_classes = logits.shape[-1]
    report = classification_report(labels, logits.argmax(-1), num_classes=num_classes)
    out = {
        f"{prefix}loss": F.cross_entropy(logits, labels).item() if len(labels) else float("nan"),
        f"{prefix}accuracy": report["accuracy"],
        f"{prefix}macro_f1": report["macro"]["f1"],
    }
    if num_classes > TOP_K:
        out[f"{prefix}top5"] = topk_accuracy(logits, labels, TOP_K)
    if num_classes == 2:  # class 1 is the positive class
        positive = report["per_class"][1]
        out.update(
            {
                f"{prefix}precision": positive["precision"],
                f"{prefix}recall": positive["recall"],
                f"{prefix}f1": positive["f1"],
                f"{prefix}macro_precision": report["macro"]["precision"],
                f"{prefix}macro_recall": report["macro"]["recall"],
            }
        )
    return out


def evaluate_classifier(forward: Callable[[Any], torch.Tensor], loader: Any, accel: Accelerator) -> dict[str, float]:
    """The engine's `evaluate` for any classifier: val_loss (example-weighted) plus the metrics above."""
    logits, labels = collect_logits(forward, loader, accel)
    return classification_metrics(logits, labels, prefix="val_")


# -- the test report -------------------------------------------------------------------------------


def write_evaluation(
    run: Run,
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    examples: Sequence[str],
    split: str,
    example_header: str = "example",
    name: str = "validation",
    left_out: int = 0,
) -> dict[str, Any]:
    """Score a split and write it into the run folder; returns {"metrics", "report", "misclassified"}.

    `name` is the run's split that was scored (held-out metrics are test_*, the train split's train_*),
    `split` where its examples came from, `left_out` how many of them were dropped as trained on.
    Writes eval.json (metrics + full report), eval/per_class.csv, plots/confusion_matrix.png,
    plots/per_class_f1.png, samples/predictions.csv and samples/misclassified.csv (most confident mistakes
    first, with the example itself), and merges the metrics into metrics.json for `dlkit compare`.
    """
    from dlkit.core.plots import plot_confusion_matrix
    from dlkit.core.splits import TRAIN, split_fields
    from dlkit.metrics import classification_report, worst_classes

    names = list(label_names)
    probs = logits.softmax(-1)
    preds = probs.argmax(-1)
    report = classification_report(labels, preds, labels=names)
    prefix = "train_" if name == TRAIN else "test_"
    metrics = {
        **split_fields(name, len(labels), left_out),
        **classification_metrics(logits, labels, prefix=prefix),
        f"{prefix}samples": len(labels),
        f"{prefix}split": split,
    }
    rows = prediction_rows(probs, labels, names, examples, example_header)
    misclassified = sorted((r for r in rows if not r["correct"]), key=lambda r: -r["confidence"])

    if run.writer:
        write_report_csv(report, run.dir / "eval" / "per_class.csv")
        plot_confusion_matrix(report["confusion_matrix"], names, run.plots_dir / "confusion_matrix.png")
        _per_class_f1_plot(report, run.plots_dir / "per_class_f1.png")
        run.write_text("samples/predictions.csv", _csv(rows))
        run.write_text("samples/misclassified.csv", _csv(misclassified[:MAX_MISCLASSIFIED]))
        run.write_json("eval.json", {**metrics, "worst_classes": worst_classes(report), "report": report})
        run.write_metrics({**run.read_metrics(), **{k: v for k, v in metrics.items() if k.startswith(prefix)}})
    return {"metrics": metrics, "report": report, "misclassified": misclassified}


def prediction_rows(
    probs: torch.Tensor, labels: torch.Tensor, names: Sequence[str], examples: Sequence[str], example_header: str
) -> list[dict[str, Any]]:
    rows = []
    for i, (row, label) in enumerate(zip(probs.tolist(), labels.tolist(), strict=True)):
        pred = max(range(len(row)), key=row.__getitem__)
        rows.append(
            {
                example_header: examples[i] if i < len(examples) else str(i),
                "true": names[label],
                "predicted": names[pred],
                "confidence": round(row[pred], 6),
                "p_true": round(row[label], 6),
                "correct": pred == label,
            }
        )
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def _per_class_f1_plot(report: dict[str, Any], path: Path, limit: int = 30) -> None:
    from dlkit.core import plots

    rows = report["per_class"]
    title = "F1 per class"
    if len(rows) > limit:
        rows = sorted(rows, key=lambda r: r["f1"])[:limit]
        title = f"F1 of the {limit} weakest classes"
    plots.bar_chart([r["class"] for r in rows], [r["f1"] for r in rows], path, ylabel="F1", title=title)


def accuracy_curves(run: Run) -> Path | None:
    """plots/accuracy.png: train accuracy per logged step and validation accuracy per eval."""
    from dlkit.core import plots

    history = run.history()
    train = [(r["step"], r["accuracy"]) for r in history if r.get("kind") == "train" and "accuracy" in r]
    val = [(r["step"], r["val_accuracy"]) for r in history if r.get("kind") == "eval" and "val_accuracy" in r]
    if not run.writer or not (train or val):
        return None
    fig, ax = plots.new_figure()
    if train:
        ax.plot(*zip(*train, strict=True), label="train (batch)", linewidth=1.0, alpha=0.7)
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    return plots.save_figure(fig, run.plots_dir / "accuracy.png")


def show_evaluation(run_dir: Path, result: dict[str, Any], example_header: str) -> None:
    """An eval command's output: the metrics as JSON (--json) or tables, then where the report files are."""
    from rich.console import Group

    from dlkit.core.progress import emit, info

    emit(result["metrics"], Group(*evaluation_tables(result, example_header)))
    info(
        f"report: {run_dir / 'eval.json'}, {run_dir / 'eval' / 'per_class.csv'}, "
        f"{run_dir / 'plots' / 'confusion_matrix.png'}, {run_dir / 'samples' / 'misclassified.csv'}"
    )


def evaluation_tables(result: dict[str, Any], example_header: str, show: int = 5) -> list[Any]:
    """Rich renderables for an eval command: the metrics, the weakest classes, a few confident mistakes."""
    from rich.table import Table

    from dlkit.core.progress import metrics_table
    from dlkit.metrics import worst_classes

    scored = result["metrics"]
    tables = [metrics_table(scored, title=f"eval ({scored['split']}, {scored['split_size']} {example_header}s)")]
    weak = Table(title="weakest classes")
    for column in ("class", "precision", "recall", "f1", "support"):
        weak.add_column(column, justify="left" if column == "class" else "right")
    for row in worst_classes(result["report"], n=show):
        weak.add_row(
            row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
        )
    tables.append(weak)
    if result["misclassified"]:
        wrong = Table(title=f"most confident mistakes (of {len(result['misclassified'])})")
        for column in (example_header, "true", "predicted", "confidence"):
            wrong.add_column(column, overflow="fold")
        for row in result["misclassified"][:show]:
            wrong.add_row(str(row[example_header]), row["true"], row["predicted"], f"{row['confidence']:.3f}")
        tables.append(wrong)
    return tables


# -- prediction ------------------------------------------------------------------------------------


def top_k(logits: torch.Tensor, label_names: Sequence[str], k: int = TOP_K) -> list[list[dict[str, Any]]]:
    """For each row of logits (N, K): the k most likely labels with their probabilities, best first."""
    probs = logits.float().softmax(-1)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        [{"label": label_names[i], "probability": round(p, 6)} for p, i in zip(vs, ix, strict=True)]
        for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def predictions_table(inputs: Sequence[str], predictions: list[list[dict[str, Any]]], input_header: str) -> Any:
    """One row per input and rank: the table `predict` prints."""
    from rich.table import Table

    table = Table(title="predictions")
    table.add_column(input_header, overflow="fold")
    table.add_column("rank", justify="right")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for item, top in zip(inputs, predictions, strict=True):
        for rank, guess in enumerate(top, start=1):
            table.add_row(item if rank == 1 else "", str(rank), guess["label"], f"{guess['probability']:.4f}")
    return table


def write_report_csv(report: dict[str, Any], path: Path) -> Path:
    """Write a classification_report's per-class rows plus macro/weighted/accuracy rows as CSV, atomically."""
    from dlkit.core.run import atomic_write_text
    from dlkit.metrics.classification import REPORT_KEYS

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["class", *REPORT_KEYS])
    for row in report["per_class"]:
        writer.writerow([row["class"], *(row[k] for k in REPORT_KEYS)])
    for avg in ("macro", "weighted"):
        writer.writerow([f"{avg} avg", *(report[avg][k] for k in REPORT_KEYS)])
    writer.writerow(["accuracy", "", "", report["accuracy"], report["num_samples"]])
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)
