"""Run folders: config.json, history.jsonl, metrics.csv, metrics.json, plots/, checkpoints/, samples/.

Every file is written atomically (temp file + rename) or, for history.jsonl, appended one whole line
per write, so a killed process never leaves a half-written file behind. Only the main process writes.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import glob
import io
import json
import os
import platform
import shutil
import socket
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlkit.core.config import META_KEY, saved_dict
from dlkit.core.errors import ConfigError, RunError

C = TypeVar("C")
CHECKPOINT_PREFIX = "step_"
FINAL_MODEL = "final"
LOCK_FILE = ".dlkit.lock"  # in every run folder: an flock held by the writing process, holding its pid


def is_main_process() -> bool:
    """True on rank 0 (or without a launcher); read from the launcher's env so no process group is needed."""
    return int(os.environ.get("RANK", "0")) == 0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to .NAME.PID.tmp, fsync, rename over NAME: readers see the old file or the new one, never half.
    A temp file left by a killed writer is removed by the next write of the same file."""
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
        pid = stale.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read history lines; a torn last line (killed mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def versions() -> dict[str, str]:
    """Versions of the libraries that decide numerics, for config.json."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ["dlkit", "torch", "transformers", "peft", "accelerate", "open_clip_torch", "torchvision"]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Run:
    """A run folder and the files inside it."""

    dir: Path
    group: str
    writer: bool = True  # False on non-main ranks: every write becomes a no-op
    provenance: dict[str, Any] = field(default_factory=dict)  # extra keys for config.json's _dlkit block
    _lock: RunLock | None = field(default=None, repr=False, compare=False)

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def history_path(self) -> Path:
        return self.dir / "history.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def metrics_csv_path(self) -> Path:
        return self.dir / "metrics.csv"

    @property
    def plots_dir(self) -> Path:
        return self.dir / "plots"

    @property
    def samples_dir(self) -> Path:
        return self.dir / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def model_dir(self) -> Path:
        """Where the final model is saved (save_pretrained folder or safetensors)."""
        return self.checkpoints_dir / FINAL_MODEL

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def create(cls, group: str, cfg: Any, default_name: str) -> Run:
        """The run folder for a `train` command, honouring --output-dir/--name/--overwrite/--resume.

        On the main process the folder is created atomically and locked for as long as the Run lives (or
        until `close()`): a second writer fails naming the pid of the first. --overwrite empties only a
        folder that is a dlkit run. Other ranks get a non-writing Run; rank 0 alone checks and creates.
        """
        if cfg.name is not None:
            check_run_name(cfg.name)
        name = cfg.name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(cfg.output_dir).expanduser() if cfg.output_dir else Path("runs") / group / name
        run = cls(root, group, writer=is_main_process())
        if root.exists() and not root.is_dir():
            raise RunError(f"--output-dir {root} is a file, not a folder; pass a folder for the run")
        if cfg.resume:
            if not root.is_dir():
                raise RunError(f"--resume: {root} does not exist; start the run without --resume")
            if not run.checkpoints():
                raise RunError(f"--resume: {root} has no checkpoint to resume from")
            existing = run.read_config()
            if existing.get(META_KEY, {}).get("group") not in (None, group):
                raise RunError(f"--resume: {root} is a {existing[META_KEY]['group']} run, not a {group} run")
            if run.writer:
                run._lock = lock_run_folder(root)
            return run
        if not run.writer:
            return run
        if not _make_folder(root):
            _replaceable(root, cfg.overwrite)  # checked before a lock file is put into someone's folder
        run._lock = lock_run_folder(root)
        try:
            for path in _replaceable(root, cfg.overwrite):  # again, now that no other dlkit process writes here
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        except BaseException:
            run.close()
            raise
        return run

    def close(self) -> None:
        """Release the run folder's lock (also released when the Run is garbage-collected or the process dies)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @classmethod
    def open(cls, path: str | Path, group: str | None = None) -> Run:
        """An existing run for eval/predict; refuses a folder that is not a run or belongs to another group."""
        root = Path(path).expanduser()
        if not (root / "config.json").is_file():
            raise RunError(f"{root} is not a dlkit run folder (no config.json)")
        found = cls(root, group or "", writer=is_main_process())
        run_group = found.read_config().get(META_KEY, {}).get("group")
        if group is not None and run_group != group:
            raise RunError(f"{root} is a {run_group} run, not a {group} run; pass a run made by `dlkit {group} train`")
        found.group = run_group or ""
        return found

    # -- config, history, metrics ---------------------------------------------------------------

    def write_config(self, cfg: Any, **meta: Any) -> None:
        if not self.writer:
            return
        info = {"group": self.group, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                "host": socket.gethostname(), "versions": versions(), **self.provenance, **meta}
        atomic_write_json(self.config_path, {**saved_dict(cfg), META_KEY: info})

    def config_as(self, cls: type[C]) -> C:
        """The run's saved config as `cls` (provenance and keys from other dlkit versions ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in self.read_config().items() if k in known})

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.dir} has no config.json") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.config_path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None

    def log(self, record: dict[str, Any]) -> None:
        """Append one history line; eval records also refresh metrics.csv."""
        if not self.writer:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
        fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one whole line
        finally:
            os.close(fd)
        if record.get("kind") == "eval":
            self._write_metrics_csv()

    def history(self, kind: str | None = None) -> list[dict[str, Any]]:
        records = read_jsonl(self.history_path)
        return [r for r in records if kind is None or r.get("kind") == kind]

    def truncate_history(self, step: int) -> None:
        """Drop records after `step`: a resumed run logs those steps again."""
        if not self.writer:
            return
        kept = [r for r in self.history() if r.get("step", 0) <= step]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        atomic_write_text(self.history_path, text)
        self._write_metrics_csv()

    def _write_metrics_csv(self) -> None:
        rows = self.history("eval")
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k != "kind" and k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_csv_path, buf.getvalue())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.writer:
            atomic_write_json(self.metrics_path, metrics)

    def read_metrics(self) -> dict[str, Any]:
        try:
            return json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.metrics_path} is corrupt ({exc.msg} at line {exc.lineno})") from None

    def write_json(self, relpath: str, obj: Any) -> Path:
        path = self.dir / relpath
        if self.writer:
            atomic_write_json(path, obj)
        return path

    def write_text(self, relpath: str, text: str) -> Path:
        path = self.dir / relpath
        if self.writer:
            atomic_write_text(path, text)
        return path

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """Complete resumable checkpoints, oldest first (a folder is complete once renamed into place)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
                 and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
        return sorted(found, key=checkpoint_step)

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step:07d}"

    def status(self) -> str:
        """finished / interrupted / diverged / running / incomplete, for `dlkit runs list`."""
        status = self.read_metrics().get("status") if self.metrics_path.exists() else None
        if status:
            return status
        pid = self.read_config().get(META_KEY, {}).get("pid") if self.config_path.exists() else None
        if pid and _alive(pid):
            return "running"
        return "interrupted" if self.checkpoints() else "incomplete"


def checkpoint_step(ckpt: Path) -> int:
    """The optimizer step a checkpoint folder (step_N) was saved at."""
    return int(ckpt.name[len(CHECKPOINT_PREFIX):])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


# -- making, locking and emptying run folders -------------------------------------------------------


def check_run_name(name: str) -> None:
    """--name is one folder name under runs/GROUP/: no separators, not '.' or '..'."""
    seps = {"/", "\\", os.sep, os.altsep or "/"}
    if not name.strip() or name in (".", "..") or any(sep in name for sep in seps) or "\0" in name:
        raise ConfigError(f"--name {name!r}: must be one folder name (no '/' or '\\', not '.' or '..'); "
                       "use --output-dir to put the run somewhere else")


def check_is_run(root: Path, flag: str) -> None:
    """Refuse to delete or replace `root` unless its config.json says it is a dlkit run."""
    try:
        meta = json.loads((root / "config.json").read_text(encoding="utf-8")).get(META_KEY)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        meta = None
    if not isinstance(meta, dict) or not meta.get("group"):
        raise RunError(f"{flag}: {root} is not a dlkit run folder (no config.json written by dlkit), so it is "
                       "not deleted; remove it yourself or pick another --output-dir/--name")


def _make_folder(root: Path) -> bool:
    """Create `root` in one step (True), or find it already there (False); no exists-check/mkdir race."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"--output-dir {root}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise RunError(f"cannot create the run folder {root} ({exc.strerror or exc})") from None
    try:
        root.mkdir()
        return True
    except FileExistsError:
        if not root.is_dir():
            raise RunError(f"--output-dir {root} is a file, not a folder; pass a folder for the run") from None
        return False
    except OSError as exc:
        raise RunError(f"cannot create the run folder {root} ({exc.strerror or exc})") from None


def _replaceable(root: Path, overwrite: bool) -> list[Path]:
    """What --overwrite would delete in an existing folder; refuses unless it is empty or a dlkit run."""
    contents = sorted(p for p in root.iterdir() if p.name != LOCK_FILE)
    if contents:
        if not overwrite:
            raise RunError(f"{root} already exists; pass --overwrite to replace it or --resume to continue it")
        check_is_run(root, "--overwrite")
    return contents


class RunLock:
    """An exclusive flock on RUN/.dlkit.lock. The OS drops it when the process dies (even by SIGKILL),
    so a crashed run never stays locked; the file keeps the holder's pid for the error message."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._close = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        self._close()


_HELD: weakref.WeakValueDictionary[str, RunLock] = weakref.WeakValueDictionary()


def lock_run_folder(folder: Path) -> RunLock:
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
        raise RunError(f"cannot write in the run folder {folder} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise RunError(f"{folder} is in use by another dlkit process ({who}); wait for it to finish, or stop "
                       "it before resuming or overwriting this run") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    lock = RunLock(folder, fd)
    _HELD[key] = lock
    return lock
