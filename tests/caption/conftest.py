"""Caption tests share the CPU with other suites: one thread each keeps them from thrashing."""

import torch

torch.set_num_threads(1)
