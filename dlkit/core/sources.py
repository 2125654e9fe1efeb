"""Where a --model or --data value comes from: `builtin:NAME`, a local path, or a Hugging Face Hub id.

Every group resolves its sources here, so they all agree on the rules and on the error messages.
A Hub id is checked up front with a short timeout, so an offline machine fails in one sentence
instead of hanging in a download retry loop.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dlkit.builtin import BUILTINS, Builtin
from dlkit.core.errors import DataError, SourceError

Kind = Literal["model", "data"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".txt", ".parquet", ".yaml", ".yml", ".tsv", ".zip", ".tar")
HUB_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Source:
    kind: Literal["builtin", "local", "hub"]
    value: str  # builtin name, absolute path, or Hub repo id
    spec: str  # what the user typed

    @property
    def path(self) -> Path:
        return Path(self.value)


def cache_dir() -> Path:
    """Where generated builtin models and datasets are cached (DLKIT_CACHE overrides)."""
    root = os.environ.get("DLKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlkit"
    return Path(root)


def cached_folder(relpath: str, build: Callable[[Path], None]) -> Path:
    """cache_dir()/relpath, made by `build(tmp_folder)` on first use and renamed into place, so parallel
    processes (pytest -n, torchrun) never see half a folder; when two race, the loser's copy is dropped.
    Put a version in `relpath` so a changed generator builds a new folder."""
    final = cache_dir() / relpath
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # a real failure, not a lost race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# A scheme hook turns what follows its prefix into (source kind, value), raising SourceError when unusable.
Scheme = Callable[[str, Kind, str], tuple[Literal["builtin", "local", "hub"], str]]


def hub_scheme(repo_id: str, kind: Kind, flag: str) -> tuple[Literal["hub"], str]:
    """`hf-hub:ID` (open_clip's spelling of a Hub id): checked like any Hub id."""
    check_hub_id(repo_id, kind, flag)
    return "hub", repo_id


def resolve(
    spec: str, kind: Kind, flag: str | None = None, check_hub: bool = True, schemes: Mapping[str, Scheme] | None = None
) -> Source:
    """Classify a source; unknown builtins, missing paths and unreachable Hub ids raise SourceError.
    `schemes` adds prefixes a group accepts besides `builtin:` (e.g. {"hf-hub:": hub_scheme})."""
    flag = flag or f"--{kind}"
    spec = spec.strip()
    if not spec:
        raise SourceError(f"{flag} is empty; pass builtin:NAME, a local path or a Hub id")
    if spec.startswith("builtin:"):
        return Source("builtin", _builtin(spec.removeprefix("builtin:"), kind, flag).name, spec)
    for prefix, scheme in (schemes or {}).items():
        if spec.startswith(prefix):
            return Source(*scheme(spec.removeprefix(prefix), kind, flag), spec)
    path = Path(spec).expanduser()
    if path.exists():
        if kind == "model" and path.is_dir():
            from dlkit.core.weights import check_folder

            check_folder(path, flag)
        return Source("local", str(path.resolve()), spec)
    if _looks_like_path(spec) or not HUB_ID.match(spec):
        raise SourceError(f"{flag} {spec}: no such file or folder")
    if check_hub:
        check_hub_id(spec, kind, flag)
    return Source("hub", spec, spec)


def _builtin(name: str, kind: Kind, flag: str) -> Builtin:
    entry = BUILTINS.get(name)
    same_kind = sorted(n for n, b in BUILTINS.items() if b.kind == kind)
    if entry is None or entry.kind != kind:
        raise SourceError(f"{flag}: unknown builtin {kind} {name!r}; available: {', '.join(same_kind)}")
    return entry


def load_builtin(name: str, **kwargs) -> object:
    """What `builtin:NAME` stands for (a model folder, a dataset, a config...), built with `kwargs`."""
    return BUILTINS[name].load(**kwargs)


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith(FILE_SUFFIXES)
        or spec.count("/") > 1
        or os.sep != "/"
        and os.sep in spec
    )


def check_hub_id(repo_id: str, kind: Kind, flag: str) -> None:
    """Fail fast and clearly when a Hub id cannot be used: offline, unknown, or gated."""
    repo_type = "dataset" if kind == "data" else "model"
    hint = f"pass a local folder or a builtin:NAME to {flag} instead"
    if _in_hub_cache(repo_id, repo_type):
        return
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise SourceError(f"{flag} {repo_id}: the Hub is disabled (HF_HUB_OFFLINE) and it is not cached; {hint}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return  # exists; from_pretrained will use the user's token
    except RepositoryNotFoundError:
        raise SourceError(
            f"{flag} {repo_id}: no such {repo_type} on the Hugging Face Hub (or it is private); {hint}"
        ) from None
    except Exception as exc:  # connection refused, DNS failure, timeout, proxy errors...
        reason = type(exc).__name__
        raise SourceError(
            f"{flag} {repo_id}: the Hugging Face Hub cannot be reached ({reason}), "
            f"so this machine looks offline; {hint}"
        ) from None


def url_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether a download host answers at all (a TCP connection within `timeout`): offline, a weights download
    is skipped at once instead of waiting in a library's retry loop."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str, repo_type: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return False
    try:
        cache = scan_cache_dir()
    except Exception:  # no cache folder yet
        return False
    return any(r.repo_id == repo_id and r.repo_type == repo_type for r in cache.repos)


def path_inside(root: Path, name: str, where: str, base: Path | None = None) -> Path:
    """`base / name` (base defaults to root) for a file named inside a data file, checked to stay in the
    dataset folder `root`: an absolute name or one climbing out with `..` is a DataError naming `where`.
    The check is on the path as written, so a dataset may still hold symlinks to images kept elsewhere."""
    joined = os.path.normpath(os.path.join(base if base is not None else root, name))
    top = os.path.normpath(root)
    if os.path.isabs(name) or (joined != top and not joined.startswith(top.rstrip(os.sep) + os.sep)):
        raise DataError(
            f"{where}: {name!r} points outside the dataset folder {root}; "
            "image paths in a data file must stay inside it"
        )
    return Path(joined)
