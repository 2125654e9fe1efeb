"""`dlkit adapter`: text classification with bottleneck adapters (written in dlkit.nn) in a frozen encoder."""

from __future__ import annotations

from dlkit.adapter.config import AdapterConfig, EvalConfig, PredictConfig
from dlkit.classify.commands import classifier_commands, sweep_command
from dlkit.core import progress
from dlkit.core.commands import config_command, group_app

app = group_app(
    "adapter",
    "Text classification with bottleneck adapters in a frozen RoBERTa/BERT, or head/full fine-tuning.",
    extra="adapter",
    requires=("transformers", "tokenizers"),
)


@config_command(app, AdapterConfig)
def train(cfg: AdapterConfig) -> None:
    """Train a sentiment/text classifier; with --method adapter only adapters, layer norms and the head train.

    Example: [bold]dlkit adapter train --model builtin:tiny-roberta --data builtin:sentiment --method adapter
    --placement houlsby --bottleneck 16[/bold]
    """
    from dlkit.adapter.task import train as run_train

    metrics = run_train(cfg)
    progress.emit(metrics, progress.metrics_table(metrics))


classifier_commands(
    app,
    "dlkit.adapter.evaluate",
    "text",
    EvalConfig,
    PredictConfig,
    eval_doc="""Accuracy, precision, recall and F1 (binary and macro), confusion matrix PNG and the misclassified texts
    (samples/misclassified.csv), on the run's test split (validation when the data has no test split); test_*
    metrics go into metrics.json.

    Example: [bold]dlkit adapter eval --run runs/adapter/houlsby[/bold]
    """,
    predict_doc="""The most likely labels with probabilities for each sentence (a table, or a list with --json).

    Example: [bold]dlkit adapter predict --run runs/adapter/houlsby "the plot was wonderful"[/bold]
    """,
)
sweep_command(
    app,
    "adapter",
    AdapterConfig,
    "dlkit.adapter.evaluate",
    EvalConfig,
    "dlkit adapter sweep --grid placement=houlsby,pfeiffer --grid bottleneck=16,64",
)
