"""The sections of a run whose group has no report hook: whatever the run folder holds.

Figures are every PNG under the run folder (plots/ first, then samples/...), tables come from
metrics.json and every CSV (per-class reports are sorted by F1 with the worst class highlighted),
results from JSON files such as eval.json, and samples from text, Markdown and JSONL files.
Checkpoints, tracker logs and prepared-data copies (data/) are left out; long files are cut with a note.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from dlkit.core.progress import format_value
from dlkit.core.run import Run
from dlkit.core.trackers import TRACKER_FOLDERS
from dlkit.report.sections import Image, Part, Section, Table, Text

MAX_DEPTH = 4  # folder levels searched under a run
MAX_FILES = 12  # images or sample files per run (the first 2 and the newest, when there are more)
MAX_ROWS = 40  # table rows shown per file (head and tail, when there are more)
MAX_CHARS = 4000  # characters of one text sample
SKIP_DIRS = {"checkpoints", *TRACKER_FOLDERS, "data", "__pycache__"}  # models, tracker logs, prepared data copies
SKIP_FILES = {"config.json", "metrics.json", "metrics.csv", "history.jsonl"}  # in the run folder itself
SKIP_ANYWHERE = {
    "vocab.json",
    "trainer_state.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model_config.json",
}
SUMMARY_ROWS = {"accuracy", "macro avg", "weighted avg", "micro avg", "macro", "weighted", "micro", "samples avg"}
F1_COLUMNS = ("f1", "f1-score", "f1_score")
COVERED_ELSEWHERE = {"plots/loss.png"}  # the group's overlaid loss curves already show it
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filepath", "filename")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_THUMBNAILS = 12  # per CSV
THUMBNAIL_PX = 160


def generic_sections(run: Run, skip: set[str] = COVERED_ELSEWHERE) -> list[Section]:
    """Figures, metrics, tables, results and samples found in the run folder, in that order."""
    files = [f for f in run_files(run.dir) if f.relative_to(run.dir).as_posix() not in skip]
    by_suffix: dict[str, list[Path]] = {}
    for path in files:
        by_suffix.setdefault(path.suffix.lower(), []).append(path)
    sections = []
    images = sorted(by_suffix.get(".png", []), key=lambda p: (p.parent.name != "plots", p.as_posix()))
    if images:
        shown, note = first_and_newest(images, MAX_FILES, "figures")
        figures: list[Part] = [Image(p, rel(p, run)) for p in shown]
        sections.append(Section("Figures", figures + ([Text(note)] if note else [])))
    nested = {k: v for k, v in run.read_metrics().items() if isinstance(v, (dict, list))}
    if nested:  # the scalars are in the comparison table already
        sections.append(Section("Best and final evaluation (metrics.json)", [key_value_table(nested, "")]))
    tables = [part for p in by_suffix.get(".csv", []) for part in csv_parts(p, rel(p, run), run)]
    if tables:
        sections.append(Section("Tables", tables))
    results = [part for p in by_suffix.get(".json", []) for part in json_parts(read_json(p), rel(p, run), run)]
    if results:
        sections.append(Section("Results", results))
    records = set(by_suffix.get(".jsonl", []))
    samples = sorted(
        [p for p in by_suffix.get(".txt", []) + by_suffix.get(".md", []) if p.with_suffix(".jsonl") not in records]
        + list(records)
    )  # x.md repeats x.jsonl
    if samples:
        shown, note = first_and_newest(samples, MAX_FILES, "sample files")
        parts = [part for p in shown for part in sample_parts(p, rel(p, run), run)]
        sections.append(Section("Samples", parts + ([Text(note)] if note else [])))
    return sections


def run_files(root: Path) -> list[Path]:
    """The run's report-worthy files, sorted; checkpoints, trackers and bookkeeping files are skipped."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(folder.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if depth < MAX_DEPTH and child.name not in SKIP_DIRS:
                    walk(child, depth + 1)
            elif (
                child.is_file()
                and child.name not in SKIP_ANYWHERE
                and not (folder == root and child.name in SKIP_FILES)
            ):
                found.append(child)

    walk(root, 1)
    return found


def rel(path: Path, run: Run) -> str:
    return path.relative_to(run.dir).as_posix()


def first_and_newest(items: list[Path], limit: int, what: str) -> tuple[list[Path], str]:
    """All items, or the first 2 and the newest (last by name) ones with a note saying how many were left out."""
    if len(items) <= limit:
        return items, ""
    shown = items[:2] + items[-(limit - 2) :]
    return shown, f"{len(items) - len(shown)} more {what} not shown ({len(items)} in all)."


def head_and_tail(rows: list[Any], limit: int = MAX_ROWS) -> tuple[list[Any], list[int], str]:
    """Rows to show, the original index of each, and a note when some were cut."""
    if len(rows) <= limit:
        return rows, list(range(len(rows))), ""
    tail = limit // 4
    index = list(range(limit - tail)) + list(range(len(rows) - tail, len(rows)))
    return [rows[i] for i in index], index, f"{limit} of {len(rows)} rows shown (first {limit - tail}, last {tail})."


def cell(value: Any, width: int = 1000) -> str:
    """A table cell: numbers formatted like `dlkit compare`, nested values as JSON, long text cut."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    text = format_value(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return text if len(text) <= width else text[:width] + " …"


def key_value_table(obj: dict[str, Any], caption: str) -> Table:
    """Scalars of a (nested) dict as key/value rows; nested dicts become dotted keys, lists are summarised."""
    rows = []

    def add(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, dict) and depth < 3:
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)
        elif isinstance(value, list):
            if value and all(isinstance(v, (int, float)) for v in value) and len(value) <= 8:
                rows.append([prefix, cell(value)])
            else:
                rows.append([prefix, f"[{len(value)} items]"])
        else:
            rows.append([prefix, cell(value)])

    add("", obj, 0)
    shown, _, note = head_and_tail(rows)
    return Table(shown, ["key", "value"], caption=caption, note=note)


def csv_parts(path: Path, caption: str, run: Run) -> list[Part]:
    """The CSV as a table, then thumbnails of the images its rows name (misclassified examples, captions)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            records = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [Text(f"{caption}: cannot be read ({exc})")]
    if not records:
        return [Text(f"{caption}: empty")]
    header, rows = records[0], [r for r in records[1:] if r]
    return [csv_table(header, rows, caption), *thumbnails(header, rows, caption, run)]


def csv_table(header: list[str], rows: list[list[str]], caption: str) -> Table:
    highlight: list[int] = []
    f1 = next((i for i, name in enumerate(header) if name.strip().lower() in F1_COLUMNS), None)
    if f1 is not None:
        rows, worst = sort_by_f1(rows, f1)
        caption += " (sorted by F1; the worst class highlighted)" if worst is not None else ""
        highlight = [worst] if worst is not None else []
    shown, index, note = head_and_tail(rows)
    return Table(
        [[cell(as_number(v)) for v in row] for row in shown],
        header,
        caption=caption,
        highlight=[index.index(i) for i in highlight if i in index],
        note=note,
    )


def thumbnails(header: list[str], rows: list[list[str]], caption: str, run: Run) -> list[Part]:
    """Small PNGs of the first images named in an image/path column, each captioned with the row's other cells."""
    column = next((i for i, name in enumerate(header) if name.strip().lower() in IMAGE_COLUMNS), None)
    if column is None:
        return []
    images: list[Part] = []
    for row in rows:
        if len(images) == MAX_THUMBNAILS:
            break
        path = Path(row[column]) if column < len(row) else Path()
        path = path if path.is_absolute() else run.dir / path
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        data = thumbnail_png(path)
        if data is not None:
            label = ", ".join(
                f"{h}: {cell(as_number(v), 60)}" for h, v in zip(header, row, strict=False) if h != header[column]
            )
            images.append(Image(path, label, data=data, width=THUMBNAIL_PX))
    if images:
        images.insert(0, Text(f"The first {len(images)} images named in {caption}:"))
    return images


def thumbnail_png(path: Path) -> bytes | None:
    """The image scaled to THUMBNAIL_PX on its longer side (small ones enlarged without blurring), as PNG."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    scale = THUMBNAIL_PX / max(image.size)
    resample = PILImage.Resampling.NEAREST if scale > 1 else PILImage.Resampling.LANCZOS
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sort_by_f1(rows: list[list[str]], f1: int) -> tuple[list[list[str]], int | None]:
    """Per-class rows by F1, best first, then the summary rows (macro avg, accuracy...); and the worst row's index."""
    classes: list[list[str]] = []
    summary: list[list[str]] = []
    for row in rows:
        (summary if row and row[0].strip().lower() in SUMMARY_ROWS else classes).append(row)
    scored = [(score, row) for row in classes if (score := number(row[f1]) if f1 < len(row) else None) is not None]
    if not scored or len(scored) < len(classes):
        return rows, None
    scored.sort(key=lambda pair: -pair[0])
    return [row for _, row in scored] + summary, len(scored) - 1


def as_number(text: str) -> float | int | str:
    value = number(text)
    return text if value is None else value


def number(text: str) -> float | int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Text(f"cannot be read ({exc})")


def json_parts(obj: Any, caption: str, run: Run) -> list[Part]:
    """A JSON file as tables: its scalars as key/value rows, each list of records as a table of its own."""
    if isinstance(obj, Text):
        return [Text(f"{caption}: {obj.text}")]
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        return records_parts(obj, caption, run)
    if not isinstance(obj, dict):
        return [Text(clip_text(json.dumps(obj, indent=2, ensure_ascii=False)), preformatted=True, caption=caption)]
    records = {k: v for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    rest = {k: v for k, v in obj.items() if k not in records}
    parts: list[Part] = [key_value_table(rest, caption)] if rest else []
    parts += [part for k, v in records.items() for part in records_parts(v, f"{caption}: {k}", run)]
    return parts


def records_parts(records: list[dict[str, Any]], caption: str, run: Run) -> list[Part]:
    """Records as a table, then thumbnails of the images they name (e.g. an image with its generated caption)."""
    header = list(dict.fromkeys(k for r in records for k in r))
    rows = [[cell(r.get(k, "")) for k in header] for r in records]
    return [records_table(records, caption), *thumbnails(header, rows, caption, run)]


def records_table(records: list[dict[str, Any]], caption: str) -> Table:
    shown, _, note = head_and_tail(records)
    return Table([{k: cell(v) for k, v in r.items()} for r in shown], caption=caption, note=note)


def sample_parts(path: Path, caption: str, run: Run) -> list[Part]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Text(f"{caption}: cannot be read ({exc})")]
    if path.suffix.lower() == ".jsonl":
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            records = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            records = []
        if records and all(isinstance(r, dict) for r in records):
            return records_parts(records, caption, run)
    markdown = path.suffix.lower() == ".md"
    return [Text(clip_text(text), preformatted=not markdown, markdown=markdown, caption=caption)]


def clip_text(text: str, limit: int = MAX_CHARS) -> str:
    text = text.rstrip("\n")
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters not shown)"
