"""Test-wide settings.

The library tests run many tiny tensor operations; PyTorch's intra-op thread pool only adds
synchronization cost there, and on a loaded 2-core machine its spin-waiting turns 0.1 ms ops
into 20 ms ones. One intra-op thread keeps the suite fast and its timing stable.
"""

import torch

torch.set_num_threads(1)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"pytest received signal {signum}")


def pytest_configure(config: object) -> None:
    """SIGTERM (a CI timeout, ``kill``) ends the session like Ctrl-C: fixtures tear down and
    ``subprocess.run`` kills the child it waits for, so no ``pbrf`` or Prefect server started by
    a test outlives pytest."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
