"""``pbrf report DIR``: rebuild a finished run's report from its artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    from flows.cli.summary import print_results
    from tasks.plan import build_plan
    from tasks.runner import read_run_config, run_node

    out = Path(args.dir)
    cfg = read_run_config(out)
    plan = build_plan(cfg.model_dump(mode="json"))
    report = plan.of_step("report")[0]
    from tasks import preflight
    from tasks.lock import run_lock

    preflight.check_inputs(out, plan, report)
    with run_lock(out):
        run_node(out, cfg, report.id, plan=plan, force=True)
    print_results(out, cfg)
    print(f"\nreport: {out / report.outputs['report_md']}")
    return 0
