"""``pbrf sweep`` and ``pbrf sweeps``: a study over a grid of config values (Figure 5)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from flows.cli.config_cmds import parse_overrides
from flows.cli.errors import ConfigError, _validation_message
from flows.cli.table import print_table


def cmd_sweeps(args: argparse.Namespace) -> int:
    from pbrf.study.sweeps import SWEEPS

    if args.names:
        print("\n".join(SWEEPS))
        return 0
    rows = [
        [
            name,
            sp.key,
            ", ".join(f"{s} ({len(sc.values)})" for s, sc in sp.scales.items()),
            sp.description,
        ]
        for name, sp in SWEEPS.items()
    ]
    print_table(rows, ["sweep", "swept key", "scales (points)", "study"])
    return 0


def _grid(items: list[str]) -> dict[str, list[Any]]:
    grid = parse_overrides(items)
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"--grid {key}: give a YAML list of values, e.g. {key}=[0.1,0.01]")
    return grid


def resolve(args: argparse.Namespace):
    """The sweep's plan from ``--spec FILE`` or NAME/--scale/--grid/--set (exit 2 if invalid)."""
    from pydantic import ValidationError

    from pbrf.study.sweeps import PointError, SweepSpec, resolve_sweep
    from tasks.sweeps.dvcgen import read_spec_file
    from tasks.sweeps.points import SWEEP_FILE, plan_sweep, read_sweep

    overrides = parse_overrides(args.set)
    if args.device:
        overrides["device"] = args.device
    try:
        if args.spec:
            if not Path(args.spec).is_file():
                raise ConfigError(f"--spec {args.spec}: file not found")
            data = read_spec_file(args.spec)
            data["overrides"] = {**data.get("overrides", {}), **overrides}
            spec = SweepSpec.model_validate(data)
        elif args.name:
            spec = resolve_sweep(args.name, args.scale, grid=_grid(args.grid), overrides=overrides)
        elif args.out and (Path(args.out) / SWEEP_FILE).is_file():  # a finished sweep's spec
            spec = read_sweep(args.out)
        else:
            raise ConfigError(
                "name a sweep (see `pbrf sweeps`), give --spec FILE, or --out a sweep directory"
            )
        return plan_sweep(spec)
    except PointError as exc:
        raise ConfigError(f"grid point {exc.point}: {_validation_message(exc.error)}") from None
    except ValidationError:
        raise
    except ValueError as exc:
        if type(exc) is ValueError:
            raise ConfigError(str(exc)) from None
        raise


def _progress(r: Any) -> None:
    where = f" from {r.source}" if r.source else ""
    took = f" ({r.seconds:.1f} s)" if r.state == "Completed" else ""
    why = f": {r.message}" if r.message else ""
    print(f"{r.point}/{r.node}: {r.state}{where}{took}{why}", file=sys.stderr, flush=True)


def _print_states(results: list[Any], sp: Any) -> None:
    from tasks.sweeps.points import summarize

    rows = []
    for p in sp.points:
        mine = [r for r in results if r.point == p.id]
        if not mine:
            continue
        counts = summarize(mine)
        sources = sorted({r.source for r in mine if r.source})
        seconds = sum(r.seconds for r in mine if r.state == "Completed")
        rows.append(
            [
                p.id,
                str(counts["Completed"]),
                f"{seconds:.1f}",
                str(counts["Cached"]),
                str(counts["Reused"]),
                ", ".join(sources) or "—",
                f"{counts['Diverged']} (+{counts['Skipped']} skipped)"
                if counts["Diverged"]
                else "—",
            ]
        )
    print_table(rows, ["point", "ran", "seconds", "cached", "reused", "reused from", "diverged"])
    total = summarize(results)
    print(
        f"\n{total['Completed']} node(s) ran, {total['Cached']} current, {total['Reused']} "
        f"reused from a sibling point; {sp.distinct_nodes()} distinct of {sp.total_nodes()} "
        "nodes in the grid"
    )
    for r in results:
        if r.state == "Diverged":
            print(
                f"warning: point {r.point}: {r.node} diverged ({r.message}); its results are "
                "missing from the table",
                file=sys.stderr,
            )


def _print_collected(out: Path, sp: Any, collected: dict[str, Any]) -> None:
    from tasks.sweeps.collect import OUTPUTS, summary_rows

    rows = summary_rows(sp, collected["table"])
    print()
    if rows:
        print_table([list(r.values()) for r in rows], list(rows[0]))
    for pid, why in collected["unfinished"].items():
        print(f"no results for point {pid}: {why}")
    if collected["verdicts"]:
        print()
        for v in collected["verdicts"]:
            print(f"trend: {v.text.replace('**', '')}")
    print(f"\ntable: {out / OUTPUTS['table']}\nreport: {out / OUTPUTS['report']}")


def _tuned(sp: Any, out: Path, asked: bool | None) -> Any:
    """The sweep with every point's learning rate chosen by its validation sweep when asked or
    its scale says so (exit 2 when the sweep varies the rate itself or its optimizer has none)."""
    from tasks.sweeps.points import plan_sweep
    from tasks.sweeps.tune_points import tuned_if_asked

    def show(pid: str, result: dict[str, Any], reused: bool) -> None:
        how = "reused" if reused else f"{len(result['grid'])} rates trained"
        print(f"{pid}: lr {result['chosen_lr']:g} ({how}; {out / 'tune'}/{result['key']}.json)")

    try:
        spec = tuned_if_asked(out, sp.spec, asked, on_point=show)
        return sp if spec is sp.spec else plan_sweep(spec)
    except ValueError as exc:
        if type(exc) is ValueError:
            raise ConfigError(f"--tune-lr: {exc}") from None
        raise


def cmd_sweep(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not args.verbose:
        settings.quiet_console()
    sp = resolve(args)
    if args.point and args.point not in {p.id for p in sp.points}:
        raise ConfigError(
            f"--point {args.point}: no such grid point; points: "
            + ", ".join(p.id for p in sp.points)
        )
    if not args.name and not (args.serial or args.point or args.collect or args.dvc):
        raise ConfigError("--spec or --out alone runs without Prefect: add --serial or --collect")
    if args.device:
        from flows.cli.run import check_device

        check_device(args.device)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sp.spec.name
    sp = _tuned(sp, out, args.tune_lr)
    if args.dvc:
        from tasks.sweeps.dvcgen import write_sweep_dvc

        spec, dvc = write_sweep_dvc(sp, args.dvc, out)
        print(f"{spec}\n{dvc}\nrun it with: dvc repro {dvc}")
        return 0
    from tasks.sweeps.collect import collect
    from tasks.sweeps.points import run_sweep_points, write_sweep

    if args.collect:
        _print_collected(out, sp, collect(sp, out, force=args.refresh))
        return 0
    t0 = time.perf_counter()
    if args.point or args.serial:
        from flows.threads import configure_threads

        configure_threads(1)
        from tasks.engine.lock import run_lock

        # a whole serial sweep holds the sweep directory; a single --point (a DVC stage) does not,
        # so DVC may run several points at once (their writes are atomic)
        held = run_lock(out) if args.serial and not args.point else contextlib.nullcontext()
        with held:
            write_sweep(out, sp, only=args.point)
            results = run_sweep_points(
                out, sp, only=args.point, refresh=args.refresh, on_result=_progress
            )
        _print_states(results, sp)
        if args.point:
            return 0
        collected = collect(sp, out, force=args.refresh)
    else:
        from flows.supervise import finished_nodes, run_study_command
        from flows.sweep import SweepParams, sweep
        from tasks.sweeps.points import SweepNodeResult, point_dir

        params = SweepParams(
            sweep=args.name or sp.spec.name,
            scale=args.scale,
            grid=_grid(args.grid),
            overrides=parse_overrides(args.set),
            out=str(out),
            device=args.device,
            refresh=args.refresh,
            tune_lr=args.tune_lr,  # the flow reuses the tunings just made
        )

        def progress() -> str:
            done = total = 0
            for pid, plan in sp.plans.items():
                done += len(finished_nodes(point_dir(out, pid), plan))
                total += len(plan.nodes)
            return f"{done} of {total} nodes of {len(sp.plans)} grid points finished"

        result, _ = run_study_command(sweep, params, out, f"pbrf sweep {sp.spec.name}", progress)
        results = [SweepNodeResult(**r) for r in result["nodes"].values()]
        print()
        _print_states(results, sp)
        collected = collect(sp, out)
    _print_collected(out, sp, collected)
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    if args.strict and (problems := strict_problems(results, collected)):
        print(f"pbrf: --strict: {problems}", file=sys.stderr)
        return 1
    return 0


def strict_problems(results: list[Any], collected: dict[str, Any]) -> str | None:
    """What ``--strict`` fails on: diverged nodes, points without results, and points whose
    runs recorded warnings (convergence, horizon, precision); None when there are none."""
    diverged = sorted({r.point for r in results if r.state == "Diverged"})
    unfinished = sorted(collected["unfinished"])
    table = collected["table"]
    warned: list[str] = []
    if table is not None and len(table) and "warnings" in table:
        per_point = table.groupby("point")["warnings"].max()
        warned = sorted(str(p) for p, n in per_point.items() if n and n > 0)
    parts = [
        f"{label}: {', '.join(points)}"
        for label, points in (
            ("diverged", diverged),
            ("no results", unfinished),
            ("warnings", warned),
        )
        if points
    ]
    return "; ".join(parts) or None
