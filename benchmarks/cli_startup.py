"""CLI start-up: `dlkit --help` and `dlkit GROUP --help` against `python -c pass`, median of N runs.

    python benchmarks/cli_startup.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from importlib.metadata import entry_points


def timed(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    baseline = timed([sys.executable, "-c", "pass"], args.repeats)
    result = {"python_c_pass_s": baseline,
              "dlkit_help_s": timed([sys.executable, "-m", "dlkit", "--help"], args.repeats)}
    for ep in sorted(entry_points(group="dlkit.groups"), key=lambda e: e.name):
        result[f"dlkit_{ep.name}_help_s"] = timed([sys.executable, "-m", "dlkit", ep.name, "--help"], args.repeats)
    result["slowest_minus_python_s"] = max(v for k, v in result.items() if k.startswith("dlkit")) - baseline
    result["goal_s"] = 0.5
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
