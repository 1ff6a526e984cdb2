"""The temporary Prefect server's own process (started by :class:`flows.server.OwnedServer`).

``python -m flows.server_process --parent PID --port PORT`` serves Prefect's API app (the same
uvicorn app as Prefect's temporary server) on loopback and ends when process ``PID`` — the
``pbrf`` that started it — dies: at once on Linux (``PR_SET_PDEATHSIG``), within a second
elsewhere (it notices being re-parented).
"""

from __future__ import annotations

import argparse

from flows.lifetime import die_with_parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.server_process")
    p.add_argument("--parent", type=int, required=True, help="pid of the owning pbrf")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    die_with_parent(args.parent, deathsig=True)
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
