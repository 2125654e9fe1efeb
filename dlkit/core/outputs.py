"""Where commands write, and what they may delete: one policy for every command that writes files.

- A command writes into a new (or empty) folder, or into a folder dlkit created for the same group and command.
  dlkit marks a folder when it creates it (MARKER), and the marker is the manifest of what dlkit wrote there:
  every file is recorded before it is written, so a killed process leaves nothing unlisted.
- `--overwrite` removes only what the manifest lists. A folder holding anything else is refused, naming it,
  with or without `--overwrite`; so is a folder another command made, and an output folder that is or holds
  one of the command's inputs.
- Files go through `atomic_write_*` (temp file + rename): a killed process never leaves a half-written file.
- Run folders written before markers existed (config.json with dlkit's block, no marker) stay usable: they are
  read, resumed and evaluated; `--overwrite` empties one only when every entry in it is a name of the run layout.

A folder written whole by a library (a checkpoint, a save_pretrained export) is recorded as a folder: everything
inside it counts as dlkit's. A folder inside an output that carries its own marker (an export inside a run) is
judged by its own manifest.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlkit.core.errors import ConfigError, RunError

MARKER = ".dlkit-output.json"  # in every folder dlkit creates: who made it, and the manifest of what it wrote
LOCK_FILE = ".dlkit.lock"  # an flock held by the writing process, holding its pid
META_KEY = "_dlkit"  # provenance block inside a run's config.json
# Top-level names of a run folder (any group, any command), for folders written before markers existed.
RUN_LAYOUT = frozenset(
    {
        "config.json",
        "history.jsonl",
        "metrics.json",
        "metrics.csv",
        "eval.json",
        "splits.json",
        "plots",
        "samples",
        "checkpoints",
        "eval",
        "data",
        "tensorboard",
        "export",
        "merged",
        "report.json",
        "report.csv",
        "candidates.csv",
        "compare.json",
        "compare.md",
        "compare.html",
        "reason.csv",
        "reason.json",
        "vocab.json",
        "wandb",
        "retrieval_test.json",
        "retrieval_validation.json",
        "retrieval_train.json",
        LOCK_FILE,
    }
)
FOLDER = "/"  # suffix of a manifest entry that covers a whole folder
ALL = "./"  # the manifest entry covering the output folder itself (an export written whole by a library)


def is_main_process() -> bool:
    """True on rank 0 (or without a launcher); read from the launcher's env so no process group is needed."""
    return int(os.environ.get("RANK", "0")) == 0


# -- atomic writes ---------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to .NAME.PID.tmp, fsync, rename over NAME: readers see the old file or the new one, never half.
    The file is recorded in the manifest of the dlkit folder it is in first; a temp file left by a killed
    writer is removed by the next write of the same file."""
    path = Path(path)
    record(path)
    _write_file(path, data)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _remove_stale_temps(path: Path) -> None:
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = stale.name[len(prefix) : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            stale.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


# -- the manifest ----------------------------------------------------------------------------------


@dataclass
class Manifest:
    """A marked folder: which dlkit command made it, and what dlkit wrote there (paths relative to it)."""

    root: Path
    group: str
    command: str
    written: set[str] = field(default_factory=set)
    created: str = ""

    @property
    def made_by(self) -> str:
        return f"dlkit {self.group} {self.command}".replace("dlkit dlkit ", "dlkit ")

    def covers(self, rel: str) -> bool:
        """Whether dlkit wrote `rel` (a file, or a folder entry), directly or as part of a folder it recorded."""
        if ALL in self.written or rel in self.written or rel + FOLDER in self.written:
            return True
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) + FOLDER in self.written:
                return True
        name = parts[-1]  # .NAME.PID.tmp: a temp file of a recorded NAME
        if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
            original = "/".join([*parts[:-1], name[1:].rsplit(".", 2)[0]])
            return original in self.written
        return False

    def save(self) -> None:
        _write_file(
            self.root / MARKER,
            (
                json.dumps(
                    {
                        "group": self.group,
                        "command": self.command,
                        "created": self.created or time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "written": sorted(self.written),
                    },
                    indent=2,
                )
                + "\n"
            ).encode("utf-8"),
        )


def read_manifest(root: Path) -> Manifest | None:
    """The manifest of a marked folder, None for a folder without a marker."""
    path = root / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(
            root,
            str(data["group"]),
            str(data["command"]),
            set(map(str, data.get("written", []))),
            str(data.get("created", "")),
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise RunError(
            f"{path} is not a readable dlkit manifest; remove the folder yourself if it is yours to delete"
        ) from None


def legacy_run_group(root: Path) -> str | None:
    """The group of a run folder written before markers existed (its config.json carries dlkit's block)."""
    if (root / MARKER).exists():
        return None
    try:
        meta = json.loads((root / "config.json").read_text(encoding="utf-8")).get(META_KEY)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return str(meta["group"]) if isinstance(meta, dict) and meta.get("group") else None


_CACHE: dict[str, tuple[int, Manifest]] = {}  # marker path -> (mtime_ns, manifest): one read per change


def record(path: Path, folder: bool = False) -> None:
    """Note in the manifest of the marked folder holding `path` that dlkit writes it (before writing it);
    `folder` records a whole folder a library writes. A file already there that dlkit did not write is never
    replaced: that is a RunError naming it. Paths outside every dlkit folder (the builtin cache) are left alone."""
    path = Path(os.path.abspath(path))
    for root in [path, *path.parents] if folder else list(path.parents):
        marker = root / MARKER
        try:
            mtime = marker.stat().st_mtime_ns
        except OSError:
            if (root / "config.json").is_file() and legacy_run_group(root):
                _check_legacy_write(root, path)
                return
            continue
        cached = _CACHE.get(str(marker))
        manifest = cached[1] if cached and cached[0] == mtime else read_manifest(root)
        assert manifest is not None
        rel = path.relative_to(root).as_posix()
        entry = ALL if rel == "." else rel + FOLDER if folder else rel
        if not manifest.covers(rel) and entry not in manifest.written:
            if path.exists() and not (path.is_dir() and not _foreign(manifest, path)):
                raise RunError(
                    f"{path} was not written by dlkit, so it is not replaced; move it away or write "
                    "the output somewhere else"
                )
            manifest.written.add(entry)
            manifest.save()
            mtime = marker.stat().st_mtime_ns
        _CACHE[str(marker)] = (mtime, manifest)
        return


def _check_legacy_write(root: Path, path: Path) -> None:
    parts = path.relative_to(root).parts
    if path.exists() and parts and parts[0] not in RUN_LAYOUT:
        raise RunError(
            f"{path} was not written by dlkit, so it is not replaced; move it away or write the output somewhere else"
        )


def _foreign(manifest: Manifest, folder: Path) -> list[Path]:
    """Files under `folder` (inside `manifest.root`) that dlkit did not write; a sub-folder with its own
    marker is judged by its own manifest."""
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        rel = entry.relative_to(manifest.root).as_posix()
        if entry.name in (MARKER, LOCK_FILE) and entry.parent == manifest.root:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if manifest.covers(rel):
                continue
            inner = read_manifest(entry)
            found.extend(_foreign(inner, entry) if inner is not None else _foreign(manifest, entry))
        elif not manifest.covers(rel):
            found.append(entry)
    return found


def _legacy_foreign(root: Path) -> list[Path]:
    """What in a legacy run folder is not a name of the run layout (plots/ may hold PNGs only)."""
    found = [p for p in sorted(root.iterdir()) if p.name not in RUN_LAYOUT]
    plots = root / "plots"
    if plots.is_dir():
        found += [p for p in sorted(plots.rglob("*")) if p.is_file() and p.suffix.lower() != ".png"]
    return found


# -- claiming an output folder ---------------------------------------------------------------------


@dataclass
class Claim:
    """An output folder this process writes into; holds its lock until released (or the process dies)."""

    root: Path
    manifest: Manifest | None  # None for a legacy run folder taken over by --resume
    lock: RunLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def check_output(
    root: Path,
    group: str,
    command: str,
    *,
    overwrite: bool,
    flag: str = "--output-dir",
    inputs: Mapping[str, Any] | None = None,
    legacy_ok: bool = False,
    resume_hint: bool = False,
) -> None:
    """Refuse, before any work, an output folder the command may not write into (see the module docstring);
    writes nothing. `legacy_ok`: the command writes run folders, so an old run folder of its group may be
    replaced; `resume_hint` names --resume as the other way on."""
    root = Path(root).expanduser()
    check_not_input(root, flag, inputs or {})
    if not root.exists():
        if root.is_symlink():
            raise RunError(f"{flag} {root} is a broken link; pass a folder")
        return
    if not root.is_dir():
        raise RunError(f"{flag} {root} is a file, not a folder; pass a folder for the output")
    _existing(root, group, command, overwrite, flag, legacy_ok, resume_hint)


def _existing(
    root: Path, group: str, command: str, overwrite: bool, flag: str, legacy_ok: bool, resume_hint: bool
) -> Manifest | None:
    """The manifest of an existing folder this command may (re)write, a fresh one for an empty folder; None for
    a legacy run folder it may replace. Everything else is a RunError naming why."""
    manifest = read_manifest(root)
    contents = [p for p in root.iterdir() if p.name not in (MARKER, LOCK_FILE)]
    if not contents:
        return Manifest(root, group, command)
    again = "pass --overwrite to replace what dlkit wrote there" + (
        " or --resume to continue it" if resume_hint else ""
    )
    if manifest is None:
        legacy = legacy_run_group(root)
        if legacy is None:
            raise RunError(_foreign_message(root, sorted(contents), flag))
        if not legacy_ok or legacy != group:
            raise RunError(
                f"{flag} {root} is a {legacy} run folder; `dlkit {group} {command}` does not replace it, "
                f"so pick another {flag}"
            )
        foreign = _legacy_foreign(root)
        if foreign:
            raise RunError(_foreign_message(root, foreign, flag))
        if not overwrite:
            raise RunError(f"{root} already exists; {again}")
        return None
    foreign = _foreign(manifest, root)
    if foreign:
        raise RunError(_foreign_message(root, foreign, flag))
    if (manifest.group, manifest.command) != (group, command):
        made = "dlkit" + "".join(f" {w}" for w in (group, command) if w != "dlkit")
        raise RunError(f"{flag} {root} was written by `{manifest.made_by}`, not by `{made}`; pick another {flag}")
    if not overwrite:
        raise RunError(f"{root} already exists; {again}")
    return manifest


def _foreign_message(root: Path, foreign: list[Path], flag: str) -> str:
    names = ", ".join(str(p.relative_to(root)) for p in foreign[:3]) + (
        f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    )
    return (
        f"{flag} {root} holds files dlkit did not write ({names}); dlkit writes only into a new folder or one "
        f"it made, and deletes only its own files, so pick another {flag}"
    )


def check_not_input(root: Path, flag: str, inputs: Mapping[str, Any]) -> None:
    """An output folder that is one of the command's inputs, or holds one, is refused."""
    out = os.path.realpath(root)
    for input_flag, value in inputs.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            path = os.path.realpath(Path(str(item)).expanduser())
            if path == out or path.startswith(out.rstrip(os.sep) + os.sep):
                raise ConfigError(
                    f"{flag} {root} is or holds the input {input_flag} {item}; write the output somewhere else"
                )


def claim(
    root: Path,
    group: str,
    command: str,
    *,
    overwrite: bool,
    flag: str = "--output-dir",
    inputs: Mapping[str, Any] | None = None,
    legacy_ok: bool = False,
    resume_hint: bool = False,
    lock: bool = True,
) -> Claim:
    """Make `root` this command's output: create it, or take an empty one, or (with --overwrite) empty one
    dlkit made for the same command of its own files. Marked, and locked against a second dlkit writer."""
    root = Path(root).expanduser()
    check_not_input(root, flag, inputs or {})
    created = _make_folder(root, flag)
    if not created:
        _existing(root, group, command, overwrite, flag, legacy_ok, resume_hint)  # before a lock file goes in
    held = lock_folder(root) if lock else None
    try:
        manifest = (
            Manifest(root, group, command)
            if created
            else _existing(root, group, command, overwrite, flag, legacy_ok, resume_hint)
        )
        if manifest is None:  # a legacy run folder: its layout names only (checked above)
            for path in sorted(root.iterdir()):
                if path.name != LOCK_FILE:
                    _remove(path)
            manifest = Manifest(root, group, command)
        else:
            remove_written(manifest)
        manifest = Manifest(root, group, command)
        manifest.save()
        _CACHE.pop(str(root / MARKER), None)
    except BaseException:
        if held is not None:
            held.release()
        raise
    return Claim(root, manifest, held)


def resume_folder(root: Path, group: str) -> Claim:
    """Lock a run folder to continue writing into it (--resume): a marked one of this group, or a legacy run."""
    root = Path(root).expanduser()
    manifest = read_manifest(root)
    made = manifest.group if manifest is not None else legacy_run_group(root)
    if made is not None and made != group:
        raise RunError(f"--resume: {root} is a {made} run, not a {group} run")
    return Claim(root, manifest, lock_folder(root))


def remove_written(manifest: Manifest) -> None:
    """Delete what the manifest covers (and what nested marked folders' manifests cover), then the folders that
    leaves empty; anything else stays."""
    _remove_covered(manifest, manifest.root)
    manifest.written.clear()


def _remove_covered(manifest: Manifest, folder: Path) -> None:
    for entry in sorted(folder.iterdir()):
        if entry.parent == manifest.root and entry.name in (MARKER, LOCK_FILE):
            continue
        if manifest.covers(entry.relative_to(manifest.root).as_posix()):
            _remove(entry)
        elif entry.is_dir() and not entry.is_symlink():
            inner = read_manifest(entry)
            if inner is not None:
                _remove_covered(inner, entry)
            else:
                _remove_covered(manifest, entry)
            _remove_if_empty(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_if_empty(folder: Path) -> None:
    if not folder.is_dir():
        return
    rest = [p for p in folder.iterdir() if p.name not in (MARKER, LOCK_FILE)]
    if not rest:
        for name in (MARKER, LOCK_FILE):
            (folder / name).unlink(missing_ok=True)
        folder.rmdir()


def _make_folder(root: Path, flag: str) -> bool:
    """Create `root` in one step (True), or find it already there (False); no exists-check/mkdir race."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{flag} {root}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise RunError(f"cannot create the output folder {root} ({exc.strerror or exc})") from None
    try:
        root.mkdir()
        return True
    except FileExistsError:
        if not root.is_dir():
            raise RunError(f"{flag} {root} is a file, not a folder; pass a folder for the output") from None
        return False
    except OSError as exc:
        raise RunError(f"cannot create the output folder {root} ({exc.strerror or exc})") from None


# -- output files ----------------------------------------------------------------------------------

FILE_MARK = "dlkit"  # what a file dlkit wrote says about its maker (PNG Software chunk, HTML/Markdown comment)


def check_output_file(path: Path, flag: str, overwrite: bool, inputs: Mapping[str, Any] | None = None) -> None:
    """A single output file (a report, a plot): new, or one dlkit wrote (it carries FILE_MARK) with --overwrite."""
    path = Path(path).expanduser()
    check_not_input(path, flag, inputs or {})
    if path.is_dir():
        raise RunError(f"{flag} {path}: is a folder; give a file name inside it")
    if not path.exists():
        return
    if not written_by_dlkit(path):
        raise RunError(
            f"{flag} {path}: exists and was not written by dlkit, so it is not replaced; pick another file name"
        )
    if not overwrite:
        raise RunError(f"{flag} {path}: already exists; pass --overwrite to replace it")


def written_by_dlkit(path: Path) -> bool:
    """Whether a single file carries dlkit's mark near its start or its end (a PNG text chunk, an HTML comment
    after the doctype, a Markdown comment as the last line)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            tail = fh.read()
    except OSError:
        return False
    marks = (f"Software\x00{FILE_MARK}".encode(), file_mark_comment().encode())
    return any(mark in part for mark in marks for part in (head, tail))


def file_mark_comment() -> str:
    return f"<!-- written by {FILE_MARK} -->"


# -- locks -----------------------------------------------------------------------------------------


class RunLock:
    """An exclusive flock on FOLDER/.dlkit.lock. The OS drops it when the process dies (even by SIGKILL),
    so a crashed command never leaves its folder locked; the file keeps the holder's pid for the error message."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._close = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        self._close()


_HELD: weakref.WeakValueDictionary[str, RunLock] = weakref.WeakValueDictionary()


def lock_folder(folder: Path) -> RunLock:
    """Lock `folder` for this process; a folder another process holds is a RunError naming its pid.

    Locking twice from one process returns the same lock (a notebook re-running a cell is not a second writer).
    """
    key = os.path.realpath(folder)
    held = _HELD.get(key)
    if held is not None:
        return held
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunError(f"cannot write in the output folder {folder} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise RunError(
            f"{folder} is in use by another dlkit process ({who}); wait for it to finish, or stop "
            "it before resuming or overwriting this run"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    lock = RunLock(folder, fd)
    _HELD[key] = lock
    return lock
