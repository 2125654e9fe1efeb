"""The longest functions of a package with their cyclomatic complexity (radon), longest first:

    python benchmarks/longest_functions.py [dlkit] [--top 10]

Lines count from the `def` to the last line of the body, docstring included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from radon.complexity import cc_visit


def functions(package: Path) -> list[tuple[int, int, str]]:
    """(lines, complexity, file:qualified name) of every function and method under `package`."""
    rows = set()  # a class's methods come both with the class and on their own
    for path in sorted(package.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            for item in [block, *getattr(block, "methods", [])]:
                if type(item).__name__ == "Class":
                    continue
                name = f"{item.classname}.{item.name}" if getattr(item, "classname", None) else item.name
                rows.add(
                    (
                        item.endline - item.lineno + 1,
                        item.complexity,
                        f"{path.relative_to(package.parent).as_posix()}:{name}",
                    )
                )
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(Path(__file__).parents[1] / "dlkit"))
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    print("| lines | CC | function |\n| ---: | ---: | --- |")
    for lines, complexity, name in functions(Path(args.package))[: args.top]:
        print(f"| {lines} | {complexity} | `{name}` |")


if __name__ == "__main__":
    main()
