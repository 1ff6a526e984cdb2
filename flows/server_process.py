"""The temporary Prefect server's own process (started by :class:`flows.server.OwnedServer`).

``python -m flows.server_process --parent PID --port PORT`` serves Prefect's API app (the same
uvicorn app as Prefect's temporary server) on loopback and ends when process ``PID`` — the
``pbrf`` that started it — dies: at once on Linux (``PR_SET_PDEATHSIG``), within a second
elsewhere (it notices being re-parented).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # died before prctl took effect
        sys.exit(0)

    def watch() -> None:  # portable fallback: the parent is gone when we are re-parented
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.server_process")
    p.add_argument("--parent", type=int, required=True, help="pid of the owning pbrf")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    _die_with_parent(args.parent)
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
