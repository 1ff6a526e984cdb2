"""``pbrf`` command line: the parser is cheap; each command imports what it needs.

Errors by kind: an invalid configuration is one line and exit status 2; a known numerical or
artifact failure (divergence, NaN loss, missing data files, a stale artifact) is one line naming
the setting or file and exit status 1; anything else is a bug and prints its traceback (exit 1).
``--debug`` prints the traceback for every failure. SIGINT, SIGTERM and SIGHUP end a command
with one line and status 128 + the signal number (130, 143, 129); see :mod:`flows.supervise`.
"""

from __future__ import annotations

import sys

from flows import settings
from flows.cli.errors import report_error
from flows.cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    settings.quiet_warnings()
    args = build_parser().parse_args(argv)
    try:
        from flows.supervise import raise_on_signals

        with raise_on_signals():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", 2)
        name = getattr(exc, "name", "SIGINT")
        print(f"pbrf: interrupted by {name}; rerun the same command to resume", file=sys.stderr)
        return 128 + signum
    except Exception as exc:
        return report_error(exc, debug=getattr(args, "debug", False))


__all__ = ["main"]
