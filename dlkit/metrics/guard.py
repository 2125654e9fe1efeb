"""One metric's failure never costs an eval the others: every eval (caption, llm, qa) scores through this."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dlkit.core.progress import MODE, warn


class GuardedMetrics:
    """Collects an eval's metrics, one named metric at a time.

    A metric that raises is reported in one line (which metric, why), recorded in `failed` and skipped;
    the metrics before and after it are kept, so the eval still writes them. With `--debug` the traceback
    is printed too. `failures()` is what the eval adds to eval.json.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.values: dict[str, Any] = {}
        self.failed: dict[str, str] = {}

    def add(self, name: str, compute: Callable[[], Mapping[str, Any]]) -> None:
        """Run `compute` (a mapping metric -> value) and keep its values under `prefix`."""
        try:
            values = compute()
        except Exception as exc:  # any failure of one metric: report it, keep the others
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
            self.failed[name] = why
            if MODE.debug:
                import traceback

                traceback.print_exc()
            warn(f"{name} failed and is left out ({why}); the other metrics are still written")
            return
        self.values.update({f"{self.prefix}{key}": value for key, value in values.items()})

    def failures(self) -> dict[str, dict[str, str]]:
        """{"failed_metrics": {name: why}} when a metric failed, else {} (for eval.json)."""
        return {"failed_metrics": dict(self.failed)} if self.failed else {}
