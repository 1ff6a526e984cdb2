"""``pbrf serve``: every catalog flow as a Prefect deployment, plus nightly reproductions."""

from __future__ import annotations

import argparse
import os
import sys

from flows.cli.errors import ConfigError


def cmd_serve(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "pbrf serve needs a lasting Prefect server: start one with `prefect server start` "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=args.cron, timezone=args.timezone)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--timezone" if err["loc"] == ("timezone",) else "--cron"
        raise ConfigError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
    if args.dask_address:  # served runs are subprocesses: they read the address from the env
        from flows.runners import DASK_ADDRESS_ENV

        os.environ[DASK_ADDRESS_ENV] = args.dask_address
    from flows.serve import deployments, parse_nightly

    nightly = [parse_nightly(s) for s in args.nightly]
    try:
        deps = deployments(nightly, cron=args.cron, timezone=args.timezone)
    except ValueError as exc:
        if type(exc) is ValueError:  # unknown preset or scale
            raise ConfigError(f"--nightly: {exc}") from None
        raise
    from prefect import serve

    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deps)
    print(f"pbrf serve: {names} (Ctrl-C stops serving)", file=sys.stderr)
    serve(*deps, limit=args.limit)
    return 0
