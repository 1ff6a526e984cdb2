"""``pbrf hessian``: one study with GNH and with Hessian influence; Tables 4/7 beside 5/6."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.cli.config_cmds import config_from, parse_overrides


def cmd_hessian(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not args.verbose:
        settings.quiet_console()
    overrides = parse_overrides(args.set)
    device = {"device": args.device} if args.device else {}
    from flows.cli.run import (
        check_budget,
        check_data,
        check_device,
        check_environment,
        check_out_dir,
    )

    cfgs = {  # validate both before starting anything
        curvature: config_from(args, {**device, "influence.curvature": curvature})
        for curvature in ("gnh", "hessian")
    }
    cfg = cfgs["gnh"]
    check_device(cfg.device)
    fc = check_budget(cfg, args.max_hours, args.yes)  # the Hessian run reuses the training
    check_environment()
    from flows.hessian import HessianComparisonParams, hessian_comparison

    params = HessianComparisonParams(
        preset=args.preset or HessianComparisonParams().preset,
        scale=args.scale,
        overrides=overrides,
        out=args.out,
        device=args.device,
        refresh=args.refresh,
    )
    base = params.out_dir()
    check_out_dir(base)
    from flows.supervise import progress_phrase, run_study_command
    from tasks.engine.plan import build_plan

    plans = {c: build_plan(cfgs[c].model_dump(mode="json")) for c in cfgs}
    check_data(base / "gnh", cfg, plans["gnh"], refresh=args.refresh)

    def progress() -> str:
        return "; ".join(f"{c}: {progress_phrase(base / c, plans[c])}" for c in plans)

    result, wall = run_study_command(
        hessian_comparison, params, base, f"pbrf hessian {params.preset} [{fc.short()}]", progress
    )
    report = Path(result["report"])
    print(report.read_text(encoding="utf-8"))
    print(f"report: {report}\nwall time {wall:.1f} s")
    return 0
