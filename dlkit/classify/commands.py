"""The `eval` and `predict` commands every classification group (vit, adapter) has: the same flags, the
same tables, the same --json output; a group names its module, its configs and the word for its inputs. Imports
no torch (the commands import the group's evaluate module when they run)."""

import importlib
from pathlib import Path
from typing import Any

import typer

from dlkit.core import progress
from dlkit.core.commands import config_command


def classifier_commands(
    app: typer.Typer, module: str, item: str, eval_config: type, predict_config: type, eval_doc: str, predict_doc: str
) -> None:
    """Add `eval` and `predict` to `app`, calling `module`'s evaluate(cfg) and predict(cfg). `item` names an
    input in tables and JSON rows ("text", "image")."""

    def evaluate(cfg) -> None:
        from dlkit.classify.classifier import show_evaluation

        show_evaluation(Path(cfg.run), importlib.import_module(module).evaluate(cfg), item)

    def predict(cfg) -> None:
        from dlkit.classify.classifier import predictions_table

        results = importlib.import_module(module).predict(cfg)
        progress.emit(results, predictions_table([r[item] for r in results], [r["top"] for r in results], item))

    evaluate.__doc__, predict.__doc__ = eval_doc, predict_doc
    config_command(app, eval_config)(evaluate)
    config_command(app, predict_config)(predict)


def sweep_command(app: typer.Typer, group: str, config_cls: type, module: str, eval_config: type, example: str) -> None:
    """Add `sweep` to a classifier group: a grid over its train flags, one run each scored by `module`'s evaluate
    on its held-out split, one comparison."""
    from dlkit.core.grid import sweep_config

    def sweep(cfg: Any) -> None:
        from dlkit.core.grid import comparison_table
        from dlkit.core.grid import sweep as run_sweep

        def evaluate(run_cfg: Any, metrics: dict[str, Any]) -> dict[str, Any]:
            scored = importlib.import_module(module).evaluate(eval_config(run=str(run_cfg.output_dir)))
            return {**metrics, **scored["metrics"]}  # the split it scored, its size and its metrics

        result = run_sweep(group, config_cls, cfg, evaluate)
        progress.emit(
            result["rows"],
            comparison_table(result["rows"], result["columns"], {}, f"{group} runs compared (held-out metrics)"),
        )

    sweep.__doc__ = (
        f"Train one run per point of a --grid over any train flag (every combination), then write one "
        f"comparison table and comparison.png over all of them.\n\n    Example: [bold]{example}[/bold]"
    )
    config_command(app, sweep_config(group))(sweep)
