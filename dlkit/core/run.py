"""Run folders: config.json, history.jsonl, metrics.csv, metrics.json, plots/, checkpoints/, samples/.

Every file is written atomically (temp file + rename) or, for history.jsonl, appended one whole line
per write, so a killed process never leaves a half-written file behind. Only the main process writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dlkit.core.config import META_KEY, TrainConfig, saved_dict
from dlkit.core.errors import ConfigError, RunError
from dlkit.core.outputs import LOCK_FILE as LOCK_FILE
from dlkit.core.outputs import Claim, alive, claim, json_default, resume_folder
from dlkit.core.outputs import atomic_write_bytes as atomic_write_bytes
from dlkit.core.outputs import atomic_write_json as atomic_write_json
from dlkit.core.outputs import atomic_write_text as atomic_write_text
from dlkit.core.outputs import is_main_process as is_main_process
from dlkit.core.outputs import record as record_write

C = TypeVar("C")
CHECKPOINT_PREFIX = "step_"
FINAL_MODEL = "final"


class RunFolderFields(Protocol):
    """Where a command's run folder goes: what `Run.create` reads (TrainConfig and RunOutput have these)."""

    output_dir: str | None
    name: str | None
    overwrite: bool


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
    _claim: Claim | None = field(default=None, repr=False, compare=False)
    _appending: set[str] = field(default_factory=set, repr=False, compare=False)  # files recorded for append_jsonl

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
    def create(cls, group: str, cfg: RunFolderFields, default_name: str, command: str = "train") -> Run:
        """The run folder of `dlkit GROUP COMMAND`, honouring --output-dir/--name/--overwrite (and --resume for a
        TrainConfig), through the output policy of dlkit.core.outputs.

        On the main process the folder is claimed (created, marked) and locked for as long as the Run lives (or
        until `close()`): a second writer fails naming the pid of the first. --overwrite removes only what dlkit
        wrote there. Other ranks get a non-writing Run; rank 0 alone checks and creates.
        """
        if cfg.name is not None:
            check_run_name(cfg.name)
        name = cfg.name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(cfg.output_dir).expanduser() if cfg.output_dir else Path("runs") / group / name
        run = cls(root, group, writer=is_main_process())
        if root.exists() and not root.is_dir():
            raise RunError(f"--output-dir {root} is a file, not a folder; pass a folder for the run")
        resume = isinstance(cfg, TrainConfig) and cfg.resume
        if resume:
            if not root.is_dir():
                raise RunError(f"--resume: {root} does not exist; start the run without --resume")
            if not run.checkpoints():
                raise RunError(f"--resume: {root} has no checkpoint to resume from")
            if run.writer:
                run._claim = resume_folder(root, group)
            return run
        if run.writer:
            run._claim = claim(
                root, group, command, overwrite=cfg.overwrite, legacy_ok=True, resume_hint=isinstance(cfg, TrainConfig)
            )
        return run

    def close(self) -> None:
        """Release the run folder's lock (also released when the Run is garbage-collected or the process dies)."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None

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
        info = {
            "group": self.group,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "versions": versions(),
            **self.provenance,
            **meta,
        }
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
        self.append_jsonl("history.jsonl", record)
        if record.get("kind") == "eval":
            self._write_metrics_csv()

    def append_jsonl(self, relpath: str, record: dict[str, Any]) -> Path:
        """Append `record` to relpath as one whole JSON line, in one write; the file is recorded in the run's
        manifest before its first line, so --overwrite may replace it."""
        path = self.dir / relpath
        if not self.writer:
            return path
        if relpath not in self._appending:
            path.parent.mkdir(parents=True, exist_ok=True)
            record_write(path)
            self._appending.add(relpath)
        line = (json.dumps(record, ensure_ascii=False, default=json_default) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one whole line
        finally:
            os.close(fd)
        return path

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

    def record_folder(self, path: Path) -> Path:
        """Note in the run's manifest that a library writes `path` (a folder) whole, before it does."""
        if self.writer:
            record_write(path, folder=True)
        return path

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """Complete resumable checkpoints, oldest first (a folder is complete once renamed into place)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [
            p
            for p in self.checkpoints_dir.iterdir()
            if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
        ]
        return sorted(found, key=checkpoint_step)

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step:07d}"

    def status(self) -> str:
        """finished / interrupted / diverged / running / incomplete, for `dlkit runs list`."""
        status = self.read_metrics().get("status") if self.metrics_path.exists() else None
        if status:
            return status
        pid = self.read_config().get(META_KEY, {}).get("pid") if self.config_path.exists() else None
        if pid and alive(pid):
            return "running"
        return "interrupted" if self.checkpoints() else "incomplete"


def checkpoint_step(ckpt: Path) -> int:
    """The optimizer step a checkpoint folder (step_N) was saved at."""
    return int(ckpt.name[len(CHECKPOINT_PREFIX) :])


# -- names -----------------------------------------------------------------------------------------


def check_run_name(name: str) -> None:
    """--name is one folder name under runs/GROUP/: no separators, not '.' or '..'."""
    seps = {"/", "\\", os.sep, os.altsep or "/"}
    if not name.strip() or name in (".", "..") or any(sep in name for sep in seps) or "\0" in name:
        raise ConfigError(
            f"--name {name!r}: must be one folder name (no '/' or '\\', not '.' or '..'); "
            "use --output-dir to put the run somewhere else"
        )
