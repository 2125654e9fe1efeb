"""The report as ONE self-contained HTML file: images as base64 data URIs, no scripts, no network, print CSS."""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from dlkit.core.outputs import atomic_write_text, file_mark_comment
from dlkit.core.progress import format_value
from dlkit.report.build import GroupReport, Report, RunReport
from dlkit.report.sections import (
    HEADING,
    RTL_RUN,
    RULE,
    Image,
    Part,
    Section,
    Table,
    Text,
    has_rtl,
    inline_markdown,
    is_rtl,
)

LEFT_COLUMNS = {"run", "group", "method", "status", "key"}

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --accent: #2f5fb3; --soft: #f4f6fa; --warn: #fff4e0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.9em; margin: 0 0 4px; }
h2 { font-size: 1.45em; margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 1.15em; margin: 28px 0 8px; }
h4 { font-size: 1.02em; margin: 18px 0 6px; color: var(--muted); }
.meta, .note, figcaption, caption { color: var(--muted); font-size: .88em; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 18px;
          margin: 16px 0; }
nav.toc ul { margin: 4px 0; padding-left: 20px; }
a { color: var(--accent); text-decoration: none; }
.broken { background: var(--warn); border: 1px solid #e8c27a; border-radius: 6px; padding: 6px 16px; }
.broken h2 { border: 0; margin: 8px 0; font-size: 1.1em; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: .86em; }
caption { text-align: left; padding: 4px 0; caption-side: top; }
th, td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; text-align: left; }
th { background: var(--soft); position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
details.config td.num { text-align: left; }
tr.highlight td { background: #fde8e8; font-weight: 600; }
details.config { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 10px 0; }
details.config summary { cursor: pointer; font-weight: 600; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; }
figure { margin: 8px 0; }
.figures.thumbs { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.figures.thumbs figure img { image-rendering: pixelated; width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.pre { font: 13px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: var(--soft);
       border: 1px solid var(--line); border-radius: 4px; padding: 8px 12px; margin: 6px 0 14px;
       white-space: pre-wrap; overflow-wrap: anywhere; }
.pre .line { min-height: 1.45em; }
.md { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 8px 14px;
      margin: 6px 0 14px; }
.md .line { margin: 3px 0; }
.md .md-h { font-weight: 700; margin: 4px 0 6px; }
.md hr { border: 0; border-top: 1px dashed var(--line); margin: 8px 0; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .92em; }
[dir="rtl"] { text-align: right; unicode-bidi: isolate; }
.pre [dir="rtl"] { font-family: "DejaVu Sans", "Vazirmatn", "Tahoma", sans-serif; }
section.run { border-left: 3px solid var(--line); padding-left: 14px; margin-top: 22px; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  nav.toc { display: none; }
  section.group { break-before: page; }
  figure, tr, .pre { break-inside: avoid; }
  .table-wrap { overflow: visible; }
  th { position: static; }
  details.config::details-content { content-visibility: visible; display: block; }
  a { color: inherit; }
}
"""


def write_html(report: Report, output: Path) -> list[Path]:
    atomic_write_text(output, render_html(report))
    return [output]


def render_html(report: Report) -> str:
    runs = report.num_runs
    meta = (
        f"{runs} run{'s' * (runs != 1)} in {len(report.groups)} group{'s' * (len(report.groups) != 1)}"
        f" · written {escape(report.created)} by dlkit {escape(report.version)}"
    )
    title = f"<h1{_dir(report.title)}>{text_html(report.title)}</h1>"
    body = [f'<header>{title}<p class="meta">{meta}</p></header>', toc(report)]
    if report.broken:
        items = "".join(f"<li>{text_html(m)}</li>" for m in report.broken)
        body.append(
            f'<section class="broken" id="broken"><h2>Runs that could not be read</h2><ul>{items}</ul></section>'
        )
    body += [group_html(g) for g in report.groups]
    return (
        f'<!DOCTYPE html>\n{file_mark_comment()}\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(report.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def toc(report: Report) -> str:
    items = []
    for group in report.groups:
        runs = "".join(f'<li><a href="#{anchor(group.name, r.label)}">{escape(r.label)}</a></li>' for r in group.runs)
        items.append(f'<li><a href="#{anchor(group.name)}">{escape(group.name)}</a><ul>{runs}</ul></li>')
    if report.broken:
        items.append('<li><a href="#broken">runs that could not be read</a></li>')
    return f'<nav class="toc"><strong>Contents</strong><ul>{"".join(items)}</ul></nav>'


def anchor(*names: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_-]+", "_", n) for n in names)


def group_html(group: GroupReport) -> str:
    out = [
        f'<section class="group" id="{anchor(group.name)}"><h2>{escape(group.name)}</h2>',
        f'<details class="config"><summary>Effective config ({escape(group.config_summary)})</summary>'
        f"{table_html(group.config)}</details>",
        "<h3>Comparison</h3>",
        table_html(group.comparison()),
    ]
    if group.loss_curves is not None:
        out += ["<h3>Loss curves</h3>", figures_html([group.loss_curves])]
    out += [run_html(group.name, r) for r in group.runs]
    out.append("</section>")
    return "\n".join(out)


def run_html(group: str, run: RunReport) -> str:
    out = [
        f'<section class="run" id="{anchor(group, run.label)}"><h3>Run {escape(run.label)}</h3>',
        f'<p class="meta">{escape(str(run.run.dir))} · {escape(str(run.row.get("status", "")))}</p>',
    ]
    out += [section_html(s) for s in run.sections]
    if not run.sections:
        out.append('<p class="note">This run folder holds no figures, tables or samples.</p>')
    out.append("</section>")
    return "\n".join(out)


def section_html(section: Section) -> str:
    out = [f"<h4>{text_html(section.title)}</h4>"]
    images: list[Image] = []
    for part in section.parts:
        if isinstance(part, Image):
            images.append(part)
            continue
        if images:
            out.append(figures_html(images))
            images = []
        out.append(part_html(part))
    if images:
        out.append(figures_html(images))
    return "\n".join(out)


def part_html(part: Part) -> str:
    if isinstance(part, Table):
        return table_html(part)
    if isinstance(part, Text):
        return text_block_html(part)
    return figures_html([part])


def figures_html(images: list[Image]) -> str:
    figures = []
    thumbnails = all(image.width for image in images)
    for image in images:
        data = image.png()
        if data is None:
            figures.append(f'<p class="note">{text_html(str(image.path))}: missing or not a PNG file</p>')
            continue
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        caption = f"<figcaption>{text_html(image.caption)}</figcaption>" if image.caption else ""
        size = f' style="max-width: {image.width}px"' if image.width else ""
        figures.append(f'<figure><img src="{uri}" alt="{escape(image.caption)}"{size}>{caption}</figure>')
    return f'<div class="figures{" thumbs" if thumbnails else ""}">{"".join(figures)}</div>'


def table_html(table: Table) -> str:
    header = table.header()
    caption = f"<caption>{text_html(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{text_html(str(c)).replace('_', '_<wbr>')}</th>" for c in header)
    rows = []
    for i, cells in enumerate(table.cells()):
        tds = []
        for j, (column, value) in enumerate(zip(header, cells, strict=False)):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            shown = format_value(value) if numeric else str(value)
            # the first column names the row (a run, a class, a key): left-aligned like text
            numeric = j > 0 and (numeric or (column not in LEFT_COLUMNS and _looks_numeric(shown)))
            css = ' class="num"' if numeric else ""
            tds.append(f"<td{css}{_dir(shown)}>{text_html(shown)}</td>")
        marked = ' class="highlight"' if i in table.highlight else ""
        rows.append(f"<tr{marked}>{''.join(tds)}</tr>")
    note = f'<p class="note">{text_html(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", text.strip()))


def text_block_html(text: Text) -> str:
    caption = f'<p class="note">{text_html(text.caption)}</p>' if text.caption else ""
    if text.markdown:
        return f'{caption}<div class="md">{markdown_lines_html(text)}</div>'
    if not text.preformatted:
        return f"{caption}<p{_dir(text.text, text.rtl)}>{text_html(text.text, text.rtl)}</p>"
    lines = []
    for line in text.text.split("\n"):
        lines.append(f'<div class="line"{_dir(line, text.rtl)}>{text_html(line, text.rtl)}</div>')
    return f'{caption}<div class="pre">{"".join(lines)}</div>'


def markdown_lines_html(text: Text) -> str:
    lines = []
    for line in text.text.split("\n"):
        heading = HEADING.match(line)
        if RULE.match(line):
            lines.append("<hr>")
        elif heading:
            lines.append(f'<div class="md-h"{_dir(heading.group(1), text.rtl)}>{text_html(heading.group(1))}</div>')
        elif line.strip():
            shown = inline_markdown(text_html(line, text.rtl))
            lines.append(f'<div class="line"{_dir(line, text.rtl)}>{shown}</div>')
    return "".join(lines)


def _dir(text: str, rtl: bool | None = None) -> str:
    """dir="rtl" on a block whose text is mostly right to left (or when the part says so)."""
    if rtl if rtl is not None else is_rtl(text):
        return ' dir="rtl"'
    return ""


def text_html(text: str, rtl: bool | None = None) -> str:
    """Escaped text; right-to-left runs inside a left-to-right block get their own dir="rtl" span."""
    if rtl or not has_rtl(text) or is_rtl(text):
        return escape(text)
    out, last = [], 0
    for match in RTL_RUN.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(f'<span dir="rtl">{escape(match.group())}</span>')
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)
