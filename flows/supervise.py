"""How ``pbrf run`` stops: signals, a lost server, and what a rerun will resume from.

The flow runs in a worker thread while the main thread keeps the signal handlers (Prefect
installs its own SIGTERM handler only when a flow runs in the main thread) and watches the API
server. On SIGINT, SIGTERM or SIGHUP, or when the server goes away, ``pbrf`` does not wait for the
steps that are running: their writes are atomic and their nodes have no manifest yet, so a rerun
recomputes exactly them and reuses every finished node. It prints one line naming the finished
steps (counted after the flow run is marked cancelled, best effort 3 s, and its server ended, so
a step that finished meanwhile is counted) and exits at once
(130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 1 for a lost server).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from flows.lifetime import stop_workers
from flows.server import ServerError

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived (raised in the main thread)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_watched(fn: Callable[[], T], problem: Callable[[], str | None], poll: float = 0.2) -> T:
    """``fn()`` in a daemon thread; the caller's thread waits, checking ``problem()`` each
    ``poll`` seconds and raising :class:`ServerError` with its answer. Signals raise here.

    The thread blocks the signals the caller handles, and so does every process it starts: a
    study's worker processes (:mod:`flows.runners`) inherit the mask from their first
    instruction, so a terminal's Ctrl-C (sent to the whole group) reaches only ``pbrf``, which
    then kills them (:func:`flows.lifetime.stop_workers`), instead of interrupting a worker
    mid-import with a traceback."""
    box: dict[str, Any] = {}

    def target() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="pbrf-flow", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll)
        if thread.is_alive() and (why := problem()) is not None:
            raise ServerError(why)
    if "error" in box:
        raise box["error"]
    return box["result"]


def finished_nodes(root: Path, plan: Any) -> list[str]:
    """Nodes whose manifests say their outputs are current (what a rerun reuses)."""
    from tasks.engine import manifest

    done = []
    for node in plan:
        with contextlib.suppress(Exception):
            if manifest.status(root, node).current:
                done.append(node.id)
    return done


def progress_phrase(root: Path, plan: Any, limit: int = 8) -> str:
    """E.g. ``"3 of 12 steps finished (prepare, select, train_base)"``."""
    done = finished_nodes(root, plan)
    total = len(plan.nodes)
    names = ", ".join(done[:limit]) + (f", … {len(done) - limit} more" if len(done) > limit else "")
    listing = f" ({names})" if done else ""
    return f"{len(done)} of {total} steps finished{listing}"


def cancel_flow_run(flow_run_id: Any, message: str, timeout: float = 3.0) -> None:
    """Mark the flow run cancelled on the API, giving up after ``timeout`` seconds."""
    if flow_run_id is None:
        return

    def call() -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with get_client(sync_client=True, httpx_settings={"timeout": timeout}) as client:
            client.set_flow_run_state(flow_run_id, Cancelled(message=message), force=True)

    def guarded() -> None:
        with contextlib.suppress(Exception):
            call()

    worker = threading.Thread(target=guarded, daemon=True)
    worker.start()
    worker.join(timeout)


def hard_exit(code: int, line: str | Callable[[], str], cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (a second signal skips it), print ``line`` and exit without waiting for
    the running steps' threads.

    A callable ``line`` is evaluated after ``cleanup``, just before the exit: steps that finish
    while the flow run is cancelled and the server stopped are then counted as finished.
    """

    def again(signum: int, frame: Any) -> None:
        os._exit(code)

    for s in SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(s, again)
    with contextlib.suppress(Exception):
        cleanup()
    print(line() if callable(line) else line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def drain_prefect(timeout: float = 5.0) -> None:
    """Send Prefect's queued logs and events before the server they go to is stopped."""
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=timeout)


def run_study_command(
    flow: Any,
    params: Any,
    out: Path,
    banner: str,
    progress: Callable[[], str],
    notes: tuple[str, ...] = (),
    **options: Any,
) -> tuple[dict[str, Any], float]:
    """What every study command does once its inputs are checked: check (or start) the API
    server, hold ``out``'s write lock, print ``banner`` and ``notes``, and run ``flow(params)``
    under :func:`run_supervised`. Returns the flow's result and its wall seconds."""
    import time

    from flows.server import api_server
    from tasks.engine.lock import run_lock

    server = api_server()
    server.check()
    with run_lock(out):
        where = os.environ.get("PREFECT_API_URL") or "temporary local Prefect server"
        print(f"{banner} → {out}  ({where})", file=sys.stderr)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        t0 = time.perf_counter()
        with server:
            result = run_supervised(flow, params, server, progress, **options)
    return result, time.perf_counter() - t0


def run_supervised(
    flow: Any, params: Any, server: Any, progress: Callable[[], str], **options: Any
) -> dict[str, Any]:
    """``flow(params)`` under supervision (see the module docstring): its result, or an
    immediate exit on a signal or a lost server. ``progress()`` says what a rerun resumes from,
    e.g. ``"3 of 12 steps finished (prepare, …)"``; ``options`` go to ``flow.with_options``."""
    ids: dict[str, Any] = {}

    def remember(flow: Any, flow_run: Any, state: Any) -> None:
        ids["flow_run"] = flow_run.id

    flow = flow.with_options(on_running=[*flow.on_running_hooks, remember], **options)

    def stop_all() -> None:
        stop_workers()
        server.stop()

    try:
        result = run_watched(lambda: flow(params), server.problem)
    except Terminated as sig:
        name = sig.name

        def line() -> str:
            return (
                f"pbrf: interrupted by {name}: {progress()}, the rest cancelled; "
                "rerun the same command to resume"
            )

        def cleanup() -> None:
            stop_workers()  # the process pool's nodes stop computing now
            cancel_flow_run(ids.get("flow_run"), line().removeprefix("pbrf: "))
            server.stop()

        hard_exit(sig.exit_code, line, cleanup)
        raise  # not reached
    except ServerError as lost:
        why = str(lost)
        hard_exit(
            1,
            lambda: f"pbrf: error: {why}: {progress()}; rerun the same command to resume",
            stop_all,
        )
        raise  # not reached
    except Exception as exc:
        if not type(exc).__module__.startswith(("httpx", "httpcore")):
            # the flow failed: send its queued logs now, while the server still runs; left for
            # exit, Prefect's log worker retries the stopped server for about 70 s
            drain_prefect()
            raise
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        hard_exit(
            1,
            lambda: (
                f"pbrf: error: lost the Prefect API at {server.api_url} ({error}): {progress()}; "
                "rerun the same command to resume"
            ),
            stop_all,
        )
        raise  # not reached
    drain_prefect()
    return result
