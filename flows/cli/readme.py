"""``pbrf readme RUN``: write a run's result block into README.md, or check the README's claims."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.errors import ConfigError


def cmd_readme(args: argparse.Namespace) -> int:
    from tasks.engine.artifacts import write_text
    from tasks.engine.runner import read_run_config
    from tasks.reports import readme
    from tasks.reports.results import Results

    run = Path(args.run)
    cfg = read_run_config(run)
    res = Results.read(run, cfg)
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    text = path.read_text(encoding="utf-8")
    name = args.name or cfg.name
    try:
        if args.check:
            problems = readme.check(text, name, res)
            for p in problems:
                print(f"pbrf: {path} [{name}]: {p}", file=sys.stderr)
            if problems:
                return 1
            print(f"{path}: every number of block {name!r} is reproduced by {run}")
            return 0
        write_text(path, readme.replace(text, name, readme.render(res, name)))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    print(f"{path}: block {name!r} written from {run}")
    return 0
