"""Test-wide settings.

The library tests run many tiny tensor operations; PyTorch's intra-op thread pool only adds
synchronization cost there, and on a loaded 2-core machine its spin-waiting turns 0.1 ms ops
into 20 ms ones. One intra-op thread keeps the suite fast and its timing stable.
"""

import torch

torch.set_num_threads(1)
