"""``pbrf hessian``: one study with GNH and with Hessian influence; Tables 4/7 beside 5/6."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flows.cli.config_cmds import config_from, parse_overrides


def cmd_hessian(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not args.verbose:
        settings.quiet_console()
    overrides = parse_overrides(args.set)
    device = {"device": args.device} if args.device else {}
    from flows.cli.run import check_device, check_out_dir

    for curvature in ("gnh", "hessian"):  # validate both before starting anything
        cfg = config_from(args, {**device, "influence.curvature": curvature})
    check_device(cfg.device)
    from flows.curvature import CurvatureComparisonParams, curvature_comparison

    params = CurvatureComparisonParams(
        preset=args.preset or CurvatureComparisonParams().preset,
        scale=args.scale,
        overrides=overrides,
        out=args.out,
        device=args.device,
        refresh=args.refresh,
    )
    check_out_dir(params.out_dir())
    t0 = time.perf_counter()
    print(f"pbrf hessian {params.preset} → {params.out_dir()}", file=sys.stderr)
    result = curvature_comparison(params)
    report = Path(result["report"])
    print(report.read_text(encoding="utf-8"))
    print(f"report: {report}\nwall time {time.perf_counter() - t0:.1f} s")
    return 0
