"""Prefect defaults for an offline laptop, applied before Prefect is imported.

Only variables the user has not set are filled in, so any of them can be overridden:

* ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` — no telemetry;
* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120`` — the temporary server can take
  10–30 s to start on a busy 2-core machine (the default 20 s times out);
* ``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=CRITICAL`` (unless ``verbose``) — the console shows the
  progress bars and the summary; Prefect's run logs still reach the server and UI.

``PREFECT_API_URL`` is left alone: unset, flows run on Prefect's temporary local server (SQLite
under ``PREFECT_HOME``, default ``~/.prefect``); set, they report to that server.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
}


def apply(verbose: bool = False) -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
