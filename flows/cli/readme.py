"""``pbrf readme RUN [RUN …]``: write each run's result block into README.md, or check the
README's claims against the runs (block ``results:NAME``, NAME the run's experiment name)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flows.cli.errors import ConfigError


def run_facts(run: Path, cfg: object) -> object:
    """The scale, data and compute time a block states about its run."""
    from pbrf.data.registry import get_spec
    from tasks.engine.manifest import MANIFEST_DIR
    from tasks.reports.compare import preset_notes
    from tasks.reports.readme import RunFacts

    seconds = 0.0
    for path in sorted((run / MANIFEST_DIR).glob("*.json")):
        seconds += float(json.loads(path.read_text(encoding="utf-8")).get("seconds", 0.0))
    data = cfg.data  # type: ignore[attr-defined]
    spec = get_spec(data.name)
    return RunFacts(preset_notes(cfg)[0], f"{data.name} ({spec.description})", seconds)


def cmd_readme(args: argparse.Namespace) -> int:
    from tasks.engine.artifacts import write_text
    from tasks.engine.runner import read_run_config
    from tasks.reports import readme
    from tasks.reports.results import Results

    if args.name and len(args.run) > 1:
        raise ConfigError("--name names one block: give one run with it")
    if args.summary and args.name:
        raise ConfigError("--summary writes the block 'summary': drop --name")
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    text = path.read_text(encoding="utf-8")
    failed = False
    if args.summary:
        rows, measured = [], {}
        for run in map(Path, args.run):
            cfg = read_run_config(run)
            facts = run_facts(run, cfg)
            rows.append(readme.summary_row(Results.read(run, cfg), facts))
            measured[cfg.name] = facts.scale
        pending = readme.pending_rows(measured)
        try:
            if args.check:
                for p in (problems := readme.check_summary(text, rows, pending)):
                    print(f"pbrf: {path} [summary]: {p}", file=sys.stderr)
                if not problems:
                    print(f"{path}: every line of block 'summary' is reproduced by the runs")
                return 1 if problems else 0
            text = readme.replace(text, readme.SUMMARY, readme.render_summary(rows, pending))
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        write_text(path, text)
        print(f"{path}: block 'summary' written from {len(rows)} run(s)")
        return 0
    for run in map(Path, args.run):
        cfg = read_run_config(run)
        res = Results.read(run, cfg)
        name = args.name or cfg.name
        try:
            if args.check:
                problems = readme.check(text, name, res)
                for p in problems:
                    print(f"pbrf: {path} [{name}]: {p}", file=sys.stderr)
                failed |= bool(problems)
                if not problems:
                    print(f"{path}: every number of block {name!r} is reproduced by {run}")
                continue
            text = readme.replace(text, name, readme.render(res, name, run_facts(run, cfg)))
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        print(f"{path}: block {name!r} written from {run}")
    if args.check:
        return 1 if failed else 0
    write_text(path, text)
    return 0
