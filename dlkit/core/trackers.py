"""Experiment trackers for `--report-to`: Accelerate's trackers, each configured for a dlkit run folder.

`--report-to` takes a comma-separated list (`tensorboard,wandb`). The names are Accelerate's; a tracker whose
package is missing is refused before anything loads, in one line naming the package (Accelerate itself would
drop it silently). Each tracker is built here rather than by name, so each gets the run's name and folder:
TensorBoard writes RUN/tensorboard, W&B writes RUN/wandb (project `dlkit-GROUP`, or WANDB_PROJECT; WANDB_MODE
offline keeps it on disk), MLflow logs to MLFLOW_TRACKING_URI (experiment `dlkit-GROUP`, or
MLFLOW_EXPERIMENT_NAME). Imports no torch: the engine builds the trackers.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from dlkit.core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from dlkit.core.run import Run

# name (as Accelerate spells it) -> (module to import, package to install)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet_ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}
TENSORBOARD_FOLDER = "tensorboard"  # inside the run folder
TRACKER_FOLDERS = (TENSORBOARD_FOLDER, "wandb")  # what trackers write into a run folder (not report material)


def tracker_names(spec: str, flag: str = "--report-to") -> list[str]:
    """The trackers of a --report-to value, in order, each once; `none` (alone) is no tracker."""
    names = list(dict.fromkeys(n.strip().lower() for n in spec.split(",") if n.strip()))
    if names in ([], ["none"]):
        return []
    unknown = [n for n in names if n not in TRACKERS]
    if unknown or "none" in names:
        bad = ", ".join(unknown) if unknown else "none (with other trackers)"
        raise ConfigError(
            f"{flag} {spec}: unknown tracker {bad}; choose none or a comma-separated list of {', '.join(TRACKERS)}"
        )
    return names


def check_installed(names: list[str], flag: str = "--report-to") -> None:
    """One line naming each tracker whose package is not installed."""
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n][0]) is None]
    if missing:
        packages = " ".join(TRACKERS[n][1] for n in missing)
        raise MissingExtraError(
            f"{flag} {','.join(missing)}: the package is not installed; install it with: pip install {packages}"
        )


def build_trackers(names: list[str], run: Run) -> list[Any]:
    """Accelerate tracker objects for `names`, writing into (or named after) `run`."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    project = f"dlkit-{run.group or 'runs'}"
    trackers: list[Any] = []
    for name in names:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(TENSORBOARD_FOLDER, str(run.dir)))
        elif name == "wandb":
            trackers.append(WandBTracker(os.environ.get("WANDB_PROJECT", project), name=run.dir.name, dir=str(run.dir)))
        elif name == "mlflow":
            trackers.append(MLflowTracker(experiment_name=project, run_name=run.dir.name))
        else:  # by name: Accelerate builds it, configured by its own environment variables
            trackers.append(name)
    return trackers
