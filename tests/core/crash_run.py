"""A dlkit command that SIGKILLs itself at a point the test picks, so crash tests need no timing window:

python tests/core/crash_run.py checkpoint N ARGS...   regression_run.py train ARGS, killed half-way through
                                                      writing the N-th checkpoint's optimizer.bin
python tests/core/crash_run.py dlkit N ARGS...        `dlkit ARGS` (a group's train), killed at the same point
python tests/core/crash_run.py report ARGS...         `dlkit report ARGS`, killed while the report's temp file
                                                      holds half of it, before it is renamed into place
"""

import io
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_in_checkpoint(n: int) -> None:
    import torch

    original = torch.save
    seen = 0

    def save(obj, f, *args, **kwargs):
        nonlocal seen
        if Path(str(f)).name == "optimizer.bin":
            seen += 1
            if seen == n:
                buf = io.BytesIO()
                original(obj, buf, *args, **kwargs)
                with open(f, "wb") as fh:
                    fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                die()
        return original(obj, f, *args, **kwargs)

    torch.save = save


def crash_in_atomic_write(target: Path) -> None:
    """Die at the fsync of `target`'s temp file (other files written before it go through)."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{target.name}."):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            die()
        real_fsync(fd)

    os.fsync = fsync


if __name__ == "__main__":
    from dlkit.cli import main, run_app

    where, args = sys.argv[1], sys.argv[2:]
    if where == "checkpoint":
        import regression_run

        crash_in_checkpoint(int(args[0]))
        sys.exit(run_app(regression_run.app, ["train", *args[1:]]))
    if where == "dlkit":
        crash_in_checkpoint(int(args[0]))
        sys.exit(main(args[1:]))
    crash_in_atomic_write(Path(args[args.index("-o") + 1]))
    sys.exit(main(["report", *args]))
