"""One intra-op thread: the tiny models here are slower with more on a shared machine."""

import torch

torch.set_num_threads(1)
