"""What a report is made of: sections holding text, tables and images, rendered to HTML or Markdown.

A group's `report_sections(run)` hook returns a list of `Section`s; so does the generic fallback.
Right-to-left text (Persian, Arabic, Hebrew...) is detected here, so a hook never has to mark it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic, Arabic Extended, and the presentation forms
RTL_CHARS = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff"
_RTL = re.compile(f"[{RTL_CHARS}]")
# a run of right-to-left words, with the spaces, digits and punctuation between them
RTL_RUN = re.compile(f"[{RTL_CHARS}](?:[{RTL_CHARS}\\s\\d.,:;!?()«»\\-\u200c]*[{RTL_CHARS}])?")


HEADING = re.compile(r"^#{1,6}\s+(.*)$")
RULE = re.compile(r"^\s*(-{3,}|\*{3,}|_{3,})\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline_markdown(escaped: str) -> str:
    """**bold** and `code` of an already HTML-escaped line, as HTML."""
    return _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>", escaped))


def has_rtl(text: str) -> bool:
    return bool(_RTL.search(text))


def is_rtl(text: str) -> bool:
    """The first letter is right-to-left (the rule of dir="auto"): "سلام world" reads right to left,
    "answer: سلام" left to right with the Persian in its own right-to-left span."""
    first = next((ch for ch in text if ch.isalpha()), "")
    return bool(first) and bool(_RTL.match(first))


@dataclass
class Text:
    """A paragraph; preformatted text (samples, generations) shown line by line as written; or light
    Markdown (headings, **bold**, `code`, --- rules) as the groups write samples/*.md."""

    text: str
    preformatted: bool = False
    caption: str = ""
    rtl: bool | None = None  # None: decided per line from the script of the text
    markdown: bool = False


@dataclass
class Table:
    """Rows as dicts (columns default to their keys in first-seen order) or as lists with `columns` given."""

    rows: list[dict[str, Any]] | list[list[Any]]
    columns: list[str] | None = None
    caption: str = ""
    highlight: list[int] = field(default_factory=list)  # row indices to mark (e.g. the worst class)
    note: str = ""  # shown under the table (e.g. "first 50 of 812 rows")

    def header(self) -> list[str]:
        if self.columns is not None:
            return list(self.columns)
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def cells(self) -> list[list[Any]]:
        header = self.header()
        return [[row.get(c, "") for c in header] if isinstance(row, dict) else list(row) for row in self.rows]


@dataclass
class Image:
    """A PNG file, embedded into the HTML report and copied next to the Markdown one."""

    path: Path
    caption: str = ""
    data: bytes | None = None  # PNG bytes made on the fly (a thumbnail of `path`), used instead of the file
    width: int | None = None  # shown at most this wide, in pixels (thumbnails); None: as wide as the page allows

    def png(self) -> bytes | None:
        """The PNG bytes; None when the file cannot be read or is not a PNG (the report says so instead)."""
        try:
            data = self.data if self.data is not None else Path(self.path).read_bytes()
        except OSError:
            return None
        return data if data.startswith(PNG_MAGIC) else None


Part = Text | Table | Image


@dataclass
class Section:
    """A titled block of a run's report; `parts` render in order."""

    title: str
    parts: list[Part] = field(default_factory=list)
