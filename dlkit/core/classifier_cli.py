"""The `eval` and `predict` commands every classification group (vit, adapter) has: the same flags, the
same tables, the same --json output; a group names its module and the words for its inputs. Imports no
torch (the commands import the group's evaluate module when they run)."""

import importlib
import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlkit.core import progress
from dlkit.core.commands import run_option


def classifier_commands(app: typer.Typer, module: str, item: str, noun: str, inputs: tuple[Any, str],
                        eval_doc: str, predict_doc: str) -> None:
    """Add `eval` and `predict` to `app`, calling `module`'s evaluate(run, batch_size, split) and
    predict(run, inputs, k). `item` names an input in tables and JSON rows ("text", "image"), `noun` in
    help texts ("sentence", "image"); `inputs` is the predict argument's (type, help)."""
    input_type, input_help = inputs

    def evaluate(
        run: Annotated[Path, run_option()],
        batch_size: Annotated[int, typer.Option(min=1, help=f"{item.capitalize()}s per forward pass.")] = 64,
        split: Annotated[Optional[str], typer.Option(help="Split to score: test (the default when the data has "  # noqa: UP045
                                                     f"one), validation (the {item}s that picked the checkpoint; "
                                                     "the default otherwise) or train (only when asked; train_* "
                                                     "metrics).")] = None,
    ) -> None:
        from dlkit.core.classification import show_evaluation

        show_evaluation(run, importlib.import_module(module).evaluate(run, batch_size=batch_size, split=split),
                        item)

    def predict(run: Path, top_k: int = 5, **named: list[Any]) -> None:
        from dlkit.core.classification import predictions_table

        results = importlib.import_module(module).predict(run, named[f"{item}s"], k=top_k)
        progress.emit(results, predictions_table([r[item] for r in results], [r["top"] for r in results], item))

    # the inputs argument is named for what it holds (texts, images): that name shows in --help and errors
    predict.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[Path, run_option()]),
        inspect.Parameter(f"{item}s", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[list[input_type], typer.Argument(help=input_help)]),  # type: ignore[valid-type]
        inspect.Parameter("top_k", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=5, annotation=Annotated[
            int, typer.Option("--top-k", min=1, help=f"Labels to show per {noun}.")]),
    ])
    evaluate.__doc__, predict.__doc__ = eval_doc, predict_doc
    app.command("eval")(evaluate)
    app.command()(predict)


def sweep_command(app: typer.Typer, group: str, config_cls: type, module: str, example: str) -> None:
    """Add `sweep` to a classifier group: a grid over its train flags, one run each scored by `module`'s evaluate
    on its held-out split, one comparison."""
    from dlkit.core.commands import config_command
    from dlkit.core.grid import sweep_config

    def sweep(cfg: Any) -> None:
        from dlkit.core.grid import comparison_table
        from dlkit.core.grid import sweep as run_sweep

        def evaluate(run_cfg: Any, metrics: dict[str, Any]) -> dict[str, Any]:
            scored = importlib.import_module(module).evaluate(Path(run_cfg.output_dir), batch_size=64, split=None)
            return {**metrics, **scored["metrics"]}  # the split it scored, its size and its metrics

        result = run_sweep(group, config_cls, cfg, evaluate)
        progress.emit(result["rows"], comparison_table(result["rows"], result["columns"], {},
                                                       f"{group} runs compared (held-out metrics)"))

    sweep.__doc__ = (f"Train one run per point of a --grid over any train flag (every combination), then write one "
                     f"comparison table and comparison.png over all of them.\n\n    Example: [bold]{example}[/bold]")
    config_command(app, sweep_config(group))(sweep)
