"""The study's process pool: Prefect's ``ProcessPoolTaskRunner`` whose workers start with
SIGINT, SIGTERM and SIGHUP blocked, whichever thread starts them.

Prefect submits to the pool from its own resolver threads, and a worker is spawned by the
thread that submits; a worker spawned from a thread that does not block the signals would take
a terminal's Ctrl-C (sent to the whole process group) while it is still importing, and print a
traceback before ``pbrf`` stops it. Blocking the signals around each ``Process.start`` gives
every worker the mask from its first instruction; :func:`flows.lifetime.init_worker` then
ignores SIGINT, and ``pbrf`` kills the workers (:func:`flows.lifetime.stop_workers`).
"""

from __future__ import annotations

import multiprocessing.context
import signal

from prefect.task_runners import ProcessPoolTaskRunner

from flows.supervise import SIGNALS


class MaskedSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned process started with :data:`flows.supervise.SIGNALS` blocked."""

    def start(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class MaskedSpawnContext(multiprocessing.context.SpawnContext):
    Process = MaskedSpawnProcess


class StudyProcessPool(ProcessPoolTaskRunner):
    """``ProcessPoolTaskRunner`` whose executor spawns :class:`MaskedSpawnProcess` workers."""

    def __enter__(self):
        runner = super().__enter__()
        self._executor._mp_context = MaskedSpawnContext()  # before the first submit spawns one
        return runner
