"""CLI start-up: `dlkit --help` and `dlkit GROUP --help` against `python -c pass`, median of N runs.

Wall seconds (`*_s`, the goal is 0.5) and CPU seconds of the child process (`*_cpu_s`, user + system),
which a busy shared machine inflates much less than wall time.

    python benchmarks/cli_startup.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import entry_points


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `cmd`."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    commands = {
        "python_c_pass": [sys.executable, "-c", "pass"],
        "dlkit_help": [sys.executable, "-m", "dlkit", "--help"],
    }
    for ep in sorted(entry_points(group="dlkit.groups"), key=lambda e: e.name):
        commands[f"dlkit_{ep.name}_help"] = [sys.executable, "-m", "dlkit", ep.name, "--help"]
    result: dict[str, float] = {}
    for name, cmd in commands.items():
        result[f"{name}_s"], result[f"{name}_cpu_s"] = timed(cmd, args.repeats)
    walls = [v for k, v in result.items() if k.startswith("dlkit") and not k.endswith("_cpu_s")]
    result["slowest_minus_python_s"] = max(walls) - result["python_c_pass_s"]
    result["goal_s"] = 0.5
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
