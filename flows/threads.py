"""How many torch threads each concurrently running step gets (an orchestration choice)."""

from __future__ import annotations

import os


class ThreadsError(ValueError):
    """``PBRF_THREADS`` is not a positive integer."""


def configure_threads(parallel: int = 1) -> int:
    """Set torch's intra-op threads: ``PBRF_THREADS`` if set, else ``cores ÷ (2·parallel)``, ≥ 1.

    ``parallel`` is the number of steps that run at once in this process. Leaving half the cores
    free avoids OpenMP oversubscription, which is ruinous for the small ops of these models:
    measured on a shared 2-core machine, the influence step of a tiny study took 11.4 s with
    2 threads and 2.8 s with 1. The count is recorded in every artifact (it changes the last
    bits of reductions, ~1e-4 relative after hundreds of epochs).
    """
    import torch

    threads = step_threads(parallel)
    torch.set_num_threads(threads)
    return threads


def study_parallel(cfg) -> int:
    """How many nodes of a study run at once at most: every variant's shards, plus one."""
    return len(cfg.retrain.variants) * cfg.retrain.shards + 1


def step_threads(parallel: int = 1) -> int:
    """The thread count :func:`configure_threads` sets, without setting it."""
    return threads_from_env() or max(1, (os.cpu_count() or 1) // (2 * max(1, parallel)))


def threads_from_env() -> int | None:
    """``PBRF_THREADS`` as a positive integer (``None`` when unset); :class:`ThreadsError` if
    it is anything else — checked before a run starts."""
    env = os.environ.get("PBRF_THREADS")
    if env is None or not env.strip():
        return None
    try:
        threads = int(env)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ThreadsError(
            f"PBRF_THREADS must be a positive integer, got {env!r}; unset it (the default is "
            "half the cores per running step) or set e.g. PBRF_THREADS=2"
        )
    return threads
