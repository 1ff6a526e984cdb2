"""``pbrf grade``: influence estimators graded against the PBRF through the Prefect flow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flows.cli.config_cmds import config_from, parse_overrides
from flows.cli.errors import ConfigError
from flows.cli.run import (
    check_budget,
    check_data,
    check_device,
    check_environment,
    check_out_dir,
)
from flows.cli.table import print_table

SHORT = {
    "pbrf": "PBRF",
    "pbrf_paper": "PBRF paper",
    "linearized_pbrf": "lin. PBRF",
    "exact": "exact",
    "cold": "LOO",
    "warm": "warm",
    "proximal": "proximal",
}


def parse_estimators(text: str | None) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]`` (``None`` stays ``None``: every built-in estimator)."""
    if text is None:
        return None
    from pbrf.estimators import ESTIMATOR_NAMES

    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in ESTIMATOR_NAMES]
    if unknown or not names:
        raise ConfigError(
            f"--estimators: unknown estimator(s) {unknown or [text]}; choose from "
            f"{', '.join(ESTIMATOR_NAMES)}"
        )
    return names


def cmd_grade(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not args.verbose:
        settings.quiet_console()
    names = parse_estimators(args.estimators)
    config_from(args, {"device": args.device} if args.device else {})  # preset, --set: exit 2
    from flows.grade import GradeParams

    params = GradeParams(
        preset=args.preset or GradeParams().preset,
        scale=args.scale,
        estimators=names,
        overrides=parse_overrides(args.set),
        out=args.out,
        device=args.device,
        refresh=args.refresh,
        isolate_costs=not args.parallel,
    )
    try:
        cfg, notes = params.config()
    except ValueError as exc:
        if type(exc) is ValueError:  # from grade_overrides; pydantic's errors pass through
            raise ConfigError(str(exc)) from None
        raise
    check_device(cfg.device)
    fc = check_budget(cfg, args.max_hours, args.yes)  # training of the decomposition it grades
    check_environment()
    out = params.out_dir()
    check_out_dir(out)
    from flows.grade import grade
    from flows.supervise import progress_phrase, run_study_command
    from tasks.engine.plan import build_plan

    plan = build_plan(cfg.model_dump(mode="json"))
    check_data(out, cfg, plan, refresh=args.refresh)
    result, wall = run_study_command(
        grade,
        params,
        out,
        f"pbrf grade {params.preset} [{fc.short()}]",
        lambda: progress_phrase(out, plan),
        notes=tuple(notes),
    )
    print()
    print_table(
        [
            [k, v["state"], f"{v['seconds']:.1f}" if v["state"] != "Cached" else "—"]
            for k, v in result["nodes"].items()
        ],
        ["node", "state", "seconds"],
    )
    warnings = print_grades(out, cfg)
    print(f"\nreport: {out / 'report' / 'report.md'}\nwall time {wall:.1f} s")
    if args.strict and warnings:
        print(f"pbrf: --strict: {len(warnings)} warning(s) above", file=sys.stderr)
        return 1
    return 0


def print_grades(out: Path, cfg: Any) -> list[str]:
    """Print the grading table (by rank); return the estimators' warnings."""
    from tasks import schemas
    from tasks.engine.manifest import read_output
    from tasks.engine.plan import build_plan
    from tasks.reports.grade_report import ordered
    from tasks.reports.results import corr_cell, fmt

    node = build_plan(cfg.model_dump(mode="json")).of_step("grade")[0]
    table = read_output(out, node, "grades", schemas.GRADES)
    names, refs = ordered(table)
    by = table.set_index(["estimator", "reference"])
    key = cfg.grade.rank_by
    others = [r for r in refs if r != key]
    rows, warnings = [], []
    for name in names:
        first = table[table["estimator"] == name].iloc[0]
        r = by.loc[(name, key)] if (name, key) in by.index else None
        cells = [str(int(first["rank"])), name + ("" if first["calibrated"] else " †")]
        cells += [
            corr_cell(r["spearman"], r["spearman_low"], r["spearman_high"])
            if r is not None
            else "—",
            corr_cell(r["pearson"], r["pearson_low"], r["pearson_high"]) if r is not None else "—",
        ]
        cells += [
            fmt(by.loc[(name, o)]["spearman"], ".2f") if (name, o) in by.index else "—"
            for o in others
        ]
        cells += [
            fmt(first["wall_time_s"], ".2f"),
            fmt(first["peak_memory_mb"], ".0f"),
            fmt(first["mislabel_auc"], ".3f"),
        ]
        rows.append(cells)
        if first["message"]:
            warnings.append(f"{name}: {first['message']}")
    print()
    print_table(
        rows,
        [
            "rank",
            "estimator",
            f"Spearman vs {SHORT.get(key, key)} [95 % CI]",
            f"Pearson vs {SHORT.get(key, key)} [95 % CI]",
            *[f"S vs {SHORT.get(o, o)}" for o in others],
            "wall s",
            "peak MB",
            "mislabel AUC",
        ],
    )
    print("† a ranking score without loss units")
    if warnings:
        print()
        for w in warnings:
            print(f"warning: {w}")
    return warnings
