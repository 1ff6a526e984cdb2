"""``pbrf report DIR``: rebuild a finished run's report from its artifacts; ``pbrf report
--compare RUN ...``: our Table 5 / Table 2 / Figure 4 across finished runs, beside the paper's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.errors import ConfigError

DEFAULT_COMPARE_OUT = Path("runs") / "compare"


def cmd_report(args: argparse.Namespace) -> int:
    if args.compare:
        if args.dir:
            raise ConfigError("give either a run directory or --compare RUN ..., not both")
        return cmd_compare(args.compare, Path(args.out) if args.out else DEFAULT_COMPARE_OUT)
    if not args.dir:
        raise ConfigError("pbrf report needs a run directory (or --compare RUN ...)")
    if args.out:
        raise ConfigError("--out goes with --compare; a run's report is written to DIR/report")
    from flows.cli.summary import print_results
    from tasks.engine.plan import build_plan
    from tasks.engine.runner import read_run_config, run_node

    out = Path(args.dir)
    cfg = read_run_config(out)
    plan = build_plan(cfg.model_dump(mode="json"))
    report = plan.of_step("report")[0]
    from tasks.engine import preflight
    from tasks.engine.lock import run_lock

    preflight.check_inputs(out, plan, report)
    with run_lock(out):
        run_node(out, cfg, report.id, plan=plan, force=True)
    print_results(out, cfg)
    print(f"\nreport: {out / report.outputs['report_md']}")
    return 0


def cmd_compare(runs: list[str], out: Path) -> int:
    from flows.cli.table import print_table
    from tasks.reports.compare import findings, write_comparison

    result = write_comparison(runs, out)
    for line in result["skipped"]:
        print(f"skipped {line}", file=sys.stderr)
    rows = [
        [
            r.run,
            r.paper_row or "—",
            _pct(r.share),
            _pct(r.paper_share),
            r.pbrf_over_loo,
            r.paper_pbrf_over_loo,
        ]
        for r in findings(result["runs"]).itertuples(index=False)
    ]
    print_table(
        rows,
        ["run", "paper row", "first-3 share", "paper", "IF~PBRF > IF~LOO", "paper"],
    )
    print(f"\ncomparison: {result['files']['markdown']}")
    return 0


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"
