"""The report as Markdown: report.md plus a folder of its PNGs (report_images/), linked relatively.

Right-to-left text goes in `<div dir="rtl">` blocks, which GitHub and most Markdown viewers render.
"""

from __future__ import annotations

import re
from pathlib import Path

from dlkit.core.outputs import atomic_write_bytes, atomic_write_text, claim, file_mark_comment
from dlkit.report.build import GroupReport, Report, RunReport
from dlkit.report.generic import cell
from dlkit.report.html import text_html
from dlkit.report.sections import HEADING, RULE, Image, Part, Section, Table, Text, has_rtl, inline_markdown, is_rtl


class _Images:
    """Copies each image once into the images folder under a unique, readable name."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[Path] = []

    def add(self, image: Image, *names: str) -> str | None:
        data = image.png()
        if data is None:
            return None
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(n for n in names if n)).strip("_") or "image"
        path = self.folder / f"{stem}.png"
        n = 1
        while path in self.written:
            n += 1
            path = self.folder / f"{stem}-{n}.png"
        atomic_write_bytes(path, data)
        self.written.append(path)
        return f"{self.folder.name}/{path.name}"


def write_markdown(report: Report, output: Path, overwrite: bool) -> list[Path]:
    """report.md and its images folder (REPORT_images/, made by dlkit: an earlier report's is replaced with
    --overwrite, a folder of the user's of that name is refused)."""
    folder = output.with_name(f"{output.stem}_images")
    claim(folder, "dlkit", "report", overwrite=overwrite, flag="--output", lock=False)
    images = _Images(folder)
    atomic_write_text(output, render_markdown(report, images))
    return [output, *images.written]


def render_markdown(report: Report, images: _Images) -> str:
    runs = report.num_runs
    out = [
        f"# {report.title}",
        "",
        f"_{runs} run{'s' * (runs != 1)} in {len(report.groups)} group{'s' * (len(report.groups) != 1)}"
        f" · written {report.created} by dlkit {report.version}_",
        "",
    ]
    for group in report.groups:
        out.append(f"- **{group.name}**: " + ", ".join(r.label for r in group.runs))
    out.append("")
    if report.broken:
        out += ["## Runs that could not be read", "", *[f"- {m}" for m in report.broken], ""]
    for group in report.groups:
        out += group_markdown(group, images)
    return "\n".join(out).rstrip("\n") + f"\n\n{file_mark_comment()}\n"


def group_markdown(group: GroupReport, images: _Images) -> list[str]:
    out = [
        f"## {group.name}",
        "",
        f"<details><summary>Effective config ({group.config_summary})</summary>",
        "",
        table_markdown(group.config),
        "",
        "</details>",
        "",
        "### Comparison",
        "",
        table_markdown(group.comparison()),
        "",
    ]
    if group.loss_curves is not None:
        out += ["### Loss curves", "", image_markdown(group.loss_curves, images, group.name, "loss"), ""]
    for run in group.runs:
        out += run_markdown(group.name, run, images)
    return out


def run_markdown(group: str, run: RunReport, images: _Images) -> list[str]:
    out = [f"### Run {run.label}", "", f"_{run.run.dir} · {run.row.get('status', '')}_", ""]
    for section in run.sections:
        out += section_markdown(section, images, group, run.label)
    return out


def section_markdown(section: Section, images: _Images, *names: str) -> list[str]:
    out = [f"#### {section.title}", ""]
    for part in section.parts:
        out += [part_markdown(part, images, *names), ""]
    return out


def part_markdown(part: Part, images: _Images, *names: str) -> str:
    if isinstance(part, Image):
        return image_markdown(part, images, *names, Path(part.path).stem)
    if isinstance(part, Table):
        return table_markdown(part)
    return text_markdown(part)


def image_markdown(image: Image, images: _Images, *names: str) -> str:
    link = images.add(image, *names)
    if link is None:
        return f"_{_inline(str(image.path))}: missing or not a PNG file_"
    return f"![{_inline(image.caption)}]({link})" + (f"\n\n_{_inline(image.caption)}_" if image.caption else "")


def table_markdown(table: Table) -> str:
    header = table.header()
    lines = [f"_{_inline(table.caption)}_", ""] if table.caption else []
    lines += ["| " + " | ".join(_cell(str(c)) for c in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for i, cells in enumerate(table.cells()):
        shown = [_cell(cell(v)) for v in cells]
        if i in table.highlight:
            shown = [f"**{v}**" if v else v for v in shown]
        lines.append("| " + " | ".join(shown) + " |")
    if table.note:
        lines += ["", f"_{_inline(table.note)}_"]
    return "\n".join(lines)


def text_markdown(text: Text) -> str:
    caption = f"_{_inline(text.caption)}_\n\n" if text.caption else ""
    if not has_rtl(text.text) and not text.rtl:
        if text.markdown:
            return caption + "\n".join(
                f"**{m.group(1)}**" if (m := HEADING.match(line)) else line for line in text.text.split("\n")
            )
        if not text.preformatted:
            return caption + text.text
        fence = "````" if "```" in text.text else "```"
        return f"{caption}{fence}\n{text.text}\n{fence}"
    lines = []  # right-to-left text needs HTML (dir="rtl"), one block per line
    for line in text.text.split("\n"):
        heading = HEADING.match(line) if text.markdown else None
        shown = text_html(heading.group(1) if heading else line, text.rtl)
        if text.markdown:
            shown = "<hr>" if RULE.match(line) else f"<strong>{shown}</strong>" if heading else inline_markdown(shown)
        direction = "rtl" if (text.rtl if text.rtl is not None else is_rtl(line)) else "ltr"
        lines.append(f'<div dir="{direction}">{shown or "&nbsp;"}</div>')
    return caption + "<div>\n" + "\n".join(lines) + "\n</div>"


def _cell(text: str) -> str:
    text = text_html(text).replace("|", "\\|").replace("\n", "<br>")
    return f'<span dir="rtl">{text}</span>' if is_rtl(text) else text


def _inline(text: str) -> str:
    """Text for one Markdown line (a caption, alt text) with the characters that would start markup escaped."""
    text = " ".join(text.split("\n"))
    return re.sub(r"([\\_*\[\]<>`])", r"\\\1", text)
