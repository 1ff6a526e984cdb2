"""Processes ``pbrf`` starts end when it ends: the temporary Prefect server and the worker
processes that run a study's nodes.

A child calls :func:`die_with_parent` first thing. On Linux the server also asks the kernel for
a signal when its parent dies (``PR_SET_PDEATHSIG``; it is tied to the thread that started the
child, which for the server is the main thread). Everywhere a daemon thread notices being
re-parented within ``poll`` seconds and ends the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time


def die_with_parent(
    parent: int, *, deathsig: bool = False, sig: int = signal.SIGTERM, poll: float = 1.0
) -> None:
    """End this process with ``sig`` when process ``parent`` dies, however it dies."""
    if deathsig and sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # died before we got here
        os.kill(os.getpid(), sig)

    def watch() -> None:  # portable: the parent is gone when we are re-parented
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def init_worker(parent: int) -> None:
    """Set up a worker process of the study's process pool (:mod:`flows.runners`): it is killed
    within half a second of the parent's death. Ctrl-C is the parent's to handle: the worker
    was started with SIGINT, SIGTERM and SIGHUP blocked (:func:`flows.supervise.run_watched`),
    and the parent kills it (:func:`stop_workers`), so no worker prints a traceback."""
    from flows.settings import quiet_warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also when started from an unmasked thread
    die_with_parent(parent, sig=signal.SIGKILL, poll=0.5)
    quiet_warnings()


def stop_workers(timeout: float = 2.0) -> None:
    """Kill this process's multiprocessing children (the process pool's workers) and reap
    them; the temporary server is not one of them."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()
    deadline = time.monotonic() + timeout
    for child in children:
        with contextlib.suppress(Exception):
            child.join(max(0.0, deadline - time.monotonic()))
