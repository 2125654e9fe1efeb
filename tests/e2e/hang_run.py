"""`dlkit` that stops making progress after a given optimizer step, so a test can kill -9 a multi-process run at a
known step (its checkpoints up to that step written):

    torchrun --nproc_per_node 2 tests/e2e/hang_run.py STEP READY DLKIT_ARGS...

After step STEP every process writes its pid into READY.RANK and sleeps until it is killed.
"""

import os
import sys
import time
from pathlib import Path

from dlkit.cli import main
from dlkit.core import engine

if __name__ == "__main__":
    step, ready, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    after_step = engine._Loop.after_step

    def hang_after(self, end_of_epoch: bool) -> None:
        after_step(self, end_of_epoch)
        if self.state.step == step:
            path = Path(f"{ready}.{os.environ.get('RANK', '0')}")
            tmp = Path(f"{path}.tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename(path)  # whole, when the test sees it
            while True:
                time.sleep(1)

    engine._Loop.after_step = hang_after
    sys.exit(main(args))
