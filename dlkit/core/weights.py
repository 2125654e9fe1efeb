"""Every weights file dlkit reads goes through here: final models, checkpoints' model files, `--model` and
`--pretrained` files and folders, run folders, feature caches.

- safetensors is preferred (it holds tensors only);
- a pickle (torch's zip container or the legacy format) is read only with `torch.load(weights_only=True)`: one
  that needs more than tensors is refused in one line, and nothing in it runs;
- a truncated or corrupt file is one line naming it and how to recover: for a run's final model, the newest
  checkpoint to write it again from (or to train again); otherwise to replace the file.

Libraries that read a folder themselves (`from_pretrained`, open_clip) get the folder checked first
(`check_folder`), and their own errors while loading become the same one line (`loading`).
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlkit.core.errors import DlkitError, WeightsError

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80
Kind = Literal["safetensors", "zip-pickle", "pickle", "unknown"]


def sniff(path: Path) -> Kind:
    """What a weights file is, from its first bytes (never from its name)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(ZIP_MAGIC):
        return "zip-pickle"
    if head[:1] == bytes([PICKLE_PROTO]):
        return "pickle"
    if len(head) >= 9:
        size = int.from_bytes(head[:8], "little")
        if 0 < size < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def check_file(path: str | Path, flag: str | None = None) -> Kind:
    """Make sure `path` can be read safely and whole, without loading it into a model; returns its kind."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if not path.is_file():
        raise WeightsError(f"{where}: no such weights file{_hint(path)}")
    try:
        kind = sniff(path)
    except OSError as exc:
        raise WeightsError(f"{where}: cannot be read ({exc.strerror or exc}){_hint(path)}") from None
    if kind == "safetensors":
        _check_safetensors(path, where)
    elif kind in ("zip-pickle", "pickle"):
        _load_pickle(path, where)
    else:
        raise WeightsError(
            f"{where}: not a weights file dlkit reads (neither safetensors nor a torch pickle), or "
            f"it is truncated or corrupt{_hint(path)}"
        )
    return kind


def _check_safetensors(path: Path, where: str) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass  # the header is parsed and the data length checked against the file size
    except Exception as exc:  # SafetensorError: truncated, bad header...
        raise WeightsError(
            f"{where}: the safetensors file is truncated or corrupt ({_reason(exc)}){_hint(path)}"
        ) from None


def _load_pickle(path: Path, where: str) -> Any:
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": the refusal below says what matters
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "WeightsUnpickler error" in text:
            after = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            reason = after[0].split(" was not")[0].strip() if after else "not plain tensors"
            raise WeightsError(
                f"{where} is a pickle that torch.load(weights_only=True) refuses ({reason}); dlkit "
                "does not run code from weight files: convert it to safetensors where you trust it"
            ) from None
        raise WeightsError(f"{where}: the pickle is truncated or corrupt ({_reason(exc)}){_hint(path)}") from None
    except Exception as exc:  # EOFError, RuntimeError from a truncated zip...
        raise WeightsError(f"{where}: the pickle is truncated or corrupt ({_reason(exc)}){_hint(path)}") from None


def load_state_dict(path: str | Path, flag: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a pickle torch reads with weights_only=True)."""
    path = Path(path)
    kind = check_file(path, flag)
    if kind == "safetensors":
        from safetensors.torch import load_file

        with loading(path, flag):
            return load_file(str(path))
    state = _load_pickle(path, f"{flag} {path}" if flag else str(path))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a dict of tensors")
    return state


def load_into(model: torch.nn.Module, path: str | Path, flag: str | None = None) -> torch.nn.Module:
    """Load a weights file into `model` (strict: every tensor present, every shape right); tied tensors, stored
    once in safetensors, are restored."""
    path = Path(path)
    kind = check_file(path, flag)
    with loading(path, flag):
        if kind == "safetensors":
            from safetensors.torch import load_model

            missing, unexpected = load_model(model, str(path), strict=False)
        else:
            missing, unexpected = model.load_state_dict(load_state_dict(path, flag), strict=False)
    if missing or unexpected:
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(sorted(missing)[:3])}" if missing else "",
                f"unexpected {', '.join(sorted(unexpected)[:3])}" if unexpected else "",
            )
            if part
        )
        raise WeightsError(f"{path}: does not fit the model ({what}){_hint(path)}")
    return model


def check_folder(folder: str | Path, flag: str | None = None) -> None:
    """Check the weights files a library will read from a model folder: its safetensors files, or (a folder
    without any) its pickles, each with weights_only=True. Nothing is loaded into a model."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    for path in safetensors or files:
        check_file(path, flag)


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """A cache file of tensors dlkit wrote (features): its tensors, or None when it is missing or unreadable
    (then it is computed again, and the bad copy replaced)."""
    if not path.is_file():
        return None
    try:
        return load_state_dict(path)
    except WeightsError as exc:
        from dlkit.core.progress import warn

        warn(f"{exc}; computing it again")
        return None


@contextlib.contextmanager
def loading(path: str | Path, flag: str | None = None) -> Iterator[None]:
    """Around a library's own loading of `path` (a file or a model folder): the errors a bad weights file
    causes (a truncated safetensors, a corrupt pickle, a missing shard) become one line naming it."""
    try:
        yield
    except DlkitError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        where = f"{flag} {path}" if flag else str(path)
        raise WeightsError(f"{where}: the weights cannot be loaded ({_reason(exc)}){_hint(Path(path))}") from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        where = f"{flag} {path}" if flag else str(path)
        raise WeightsError(
            f"{where}: the safetensors file is truncated or corrupt ({_reason(exc)}){_hint(Path(path))}"
        ) from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:160]


def _hint(path: Path) -> str:
    """How to get a good copy: for a file of a run, the run's newest checkpoint (a --resume writes the final model
    again from it) or training again; otherwise replacing the file."""
    run = _run_of(path)
    if run is None:
        return "; replace it with a good copy"
    group = run[1]
    checkpoints = sorted((run[0] / "checkpoints").glob("step_*")) if (run[0] / "checkpoints").is_dir() else []
    again = f"dlkit {group} train --config {run[0] / 'config.json'} --output-dir {run[0]}"
    if checkpoints and path.is_relative_to(run[0] / "checkpoints" / "final"):
        return (
            f"; the run's newest checkpoint is {checkpoints[-1]}: `{again} --resume` writes the final model "
            "again from it"
        )
    if checkpoints and not path.is_relative_to(checkpoints[-1]):
        return f"; use the run's newest checkpoint {checkpoints[-1]} (`{again} --resume`), or train the run again"
    return f"; the run has no other checkpoint to recover from: train it again (`{again} --overwrite`)"


def _run_of(path: Path) -> tuple[Path, str] | None:
    """(run folder, group) of a file inside a dlkit run folder."""
    for parent in Path(path).resolve().parents:
        try:
            meta = json.loads((parent / "config.json").read_text(encoding="utf-8")).get("_dlkit")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(meta, dict) and meta.get("group"):
            return parent, str(meta["group"])
    return None
