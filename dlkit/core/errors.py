"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class DlkitError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""

    exit_code = 2


class ConfigError(DlkitError):
    """A bad flag, config file or config value."""


class DataError(DlkitError):
    """Data that cannot be read or does not have the expected shape."""


class SourceError(DlkitError):
    """A model or data source that cannot be resolved (unknown builtin, offline Hub id, missing path)."""


class RunError(DlkitError):
    """A run folder that cannot be created, resumed or read."""


class WeightsError(DlkitError):
    """A weights file that cannot be read safely and whole: truncated, corrupt, or a pickle that needs code."""


class MissingExtraError(DlkitError):
    """A group's optional dependencies are not installed."""


class TrainingStopped(DlkitError):
    """Training stopped on purpose (non-finite loss); the last good checkpoint is kept."""


class Diverged(TrainingStopped):
    """Training stopped because the smoothed loss grew past --divergence-factor x its best."""


class Interrupted(DlkitError):
    """Ctrl-C: a checkpoint was saved and the run can be resumed."""

    exit_code = 130
