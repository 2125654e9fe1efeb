"""Assertions more than one group's tests make."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any, *fragments: str) -> str:
    """A command failed as dlkit promises bad input fails: exit code 2 and one line on stderr, `error: ...`,
    holding every fragment. Returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
