"""Reading a report back: the images, links, headings and right-to-left text of an HTML page."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Page:
    """What the report tests look at in an HTML page."""

    images: list[str] = field(default_factory=list)  # src of every <img>
    links: list[str] = field(default_factory=list)  # every src/href/data/action attribute value
    ids: set[str] = field(default_factory=set)
    headings: list[str] = field(default_factory=list)
    rtl_text: list[str] = field(default_factory=list)  # text inside elements with dir="rtl"
    highlighted_rows: list[list[str]] = field(default_factory=list)
    details_summaries: list[str] = field(default_factory=list)
    scripts: int = 0


class _Parser(HTMLParser):
    VOID = {"img", "br", "hr", "meta", "link", "input", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[tuple[str, bool]] = []  # (tag, opens an rtl element)
        self.rtl_depth = 0
        self.heading: list[str] | None = None
        self.row: list[str] | None = None
        self.summary: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href", "data", "action", "poster"):
            if a.get(key):
                self.page.links.append(a[key])
        if a.get("id"):
            self.page.ids.add(a["id"])
        if tag == "img":
            self.page.images.append(a.get("src") or "")
        if tag == "script":
            self.page.scripts += 1
        if tag in ("h1", "h2", "h3", "h4"):
            self.heading = []
        if tag == "tr" and "highlight" in (a.get("class") or ""):
            self.row = []
        if tag == "summary":
            self.summary = []
        if tag in ("td", "th") and self.row is not None:
            self.row.append("")
        if tag not in self.VOID:
            rtl = a.get("dir") == "rtl"
            self.rtl_depth += rtl
            self.stack.append((tag, rtl))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        while self.stack:
            open_tag, rtl = self.stack.pop()
            self.rtl_depth -= rtl
            if open_tag == tag:
                break
        if tag in ("h1", "h2", "h3", "h4") and self.heading is not None:
            self.page.headings.append("".join(self.heading).strip())
            self.heading = None
        if tag == "tr" and self.row is not None:
            self.page.highlighted_rows.append(self.row)
            self.row = None
        if tag == "summary" and self.summary is not None:
            self.page.details_summaries.append("".join(self.summary).strip())
            self.summary = None

    def handle_data(self, data: str) -> None:
        if self.rtl_depth:
            self.page.rtl_text.append(data)
        if self.heading is not None:
            self.heading.append(data)
        if self.summary is not None:
            self.summary.append(data)
        if self.row:
            self.row[-1] += data


def parse_page(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page


def decode_png(src: str) -> tuple[int, int]:
    """The size of a data-URI PNG; fails unless it is a PNG that decodes completely."""
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    data = base64.b64decode(src[len(prefix) :], validate=True)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def assert_rtl(page: Page, text: str) -> None:
    inside = "".join(page.rtl_text)
    assert text in inside, f'{text!r} is not inside a dir="rtl" element'
