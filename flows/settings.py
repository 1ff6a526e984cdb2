"""Prefect defaults for an offline laptop, applied before Prefect is imported.

Only variables the user has not set are filled in, so any of them can be overridden:

* ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` and ``DO_NOT_TRACK=1`` — no telemetry;
* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120`` — the temporary server can take
  10–30 s to start on a busy 2-core machine (the default 20 s times out).

``quiet_console()`` (what ``pbrf run`` uses unless ``--verbose``) hides Prefect's run logs on the
console; they still reach the server and its UI. ``PREFECT_API_URL`` is left alone: unset, flows
run on a temporary local server that ``pbrf run`` starts and owns (SQLite under ``PREFECT_HOME``;
see :mod:`flows.server`); set, they report there.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


# -W filters for processes Python starts itself (multiprocessing passes sys.warnoptions on): the
# resource tracker of the worker processes, which after an interrupt unlinks the pool's
# semaphores as it should and then warns that it had to
CHILD_WARNING_FILTERS = ("ignore:resource_tracker:UserWarning",)


def quiet_warnings() -> None:
    """Hide warnings that are not the user's concern: torchvision's import-time use of a
    deprecated torch.jit API, and the resource tracker's note on cleaning up after an
    interrupt. The CLI and every worker process call it."""
    import sys
    import warnings

    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
    for option in CHILD_WARNING_FILTERS:
        if option not in sys.warnoptions:
            sys.warnoptions.append(option)


def quiet_console() -> None:
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
