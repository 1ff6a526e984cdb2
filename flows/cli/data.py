"""``pbrf data fetch NAME``: download a data set's files, or say exactly where to put them."""

from __future__ import annotations

import argparse

from flows.cli.errors import ConfigError


def cmd_fetch(args: argparse.Namespace) -> int:
    from pbrf.data.registry import SPECS
    from tasks.engine.datafetch import fetch

    if args.name not in SPECS:
        raise ConfigError(f"unknown data set {args.name!r}; choose one of {', '.join(SPECS)}")
    result = fetch(args.name, args.root)
    for path in result.downloaded:
        print(path)
    print(result.summary())
    return 0
