"""``pbrf run``: a study through the Prefect flow, then its summary."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from flows.cli.config_cmds import config_from, parse_overrides
from flows.cli.errors import ConfigError, RuntimeFailure, clip
from flows.cli.table import print_table


def check_device(device: str) -> None:
    """A requested accelerator must exist before anything starts (exit 2 otherwise)."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r}: no CUDA device is available here; use --device cpu"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are available"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps': the Apple GPU backend is not available here")


# room left under --out for the deepest file a run writes (report/figures/…, sweep points)
OUT_RESERVE = 160


def check_out_dir(out: Path) -> None:
    """``--out`` must be creatable: no file in the way, names and the path within the OS limits.

    Checked before anything is created (exit 1 naming the limit otherwise).
    """
    out = Path(out)
    existing = _nearest_existing(out)
    if existing is None:
        raise RuntimeFailure(f"--out {clip(str(out))}: no existing parent directory")
    if not existing.is_dir():
        raise RuntimeFailure(f"--out {clip(str(out))}: {existing} exists and is not a directory")
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    for part in out.absolute().parts:
        if len(os.fsencode(part)) > name_max:
            raise RuntimeFailure(
                f"--out {clip(str(out))}: the name {clip(part, 40)!r} is {len(os.fsencode(part))} "
                f"bytes, over this file system's limit of {name_max}; use a shorter --out"
            )
    size = len(os.fsencode(str(out.absolute())))
    if size + OUT_RESERVE > path_max:
        raise RuntimeFailure(
            f"--out {clip(str(out))}: the path is {size} bytes; with the {OUT_RESERVE} bytes a "
            f"run adds below it that exceeds this system's limit of {path_max}; use a shorter --out"
        )


def _nearest_existing(path: Path) -> Path | None:
    """``path`` or its nearest ancestor that exists (``None`` if a name is too long to stat)."""
    for parent in [path, *path.parents]:
        try:
            if parent.exists() or parent.is_symlink():
                return parent
        except OSError:  # a component over NAME_MAX: keep climbing to one that can be checked
            continue
    return None


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def check_prefect_home() -> None:
    """Prefect writes its database, settings and logs under ``PREFECT_HOME`` (default
    ``~/.prefect``): a read-only one must fail now, naming the variable, not after the run
    directory is made."""
    given = os.environ.get("PREFECT_HOME")
    home = Path(given or Path.home() / ".prefect").expanduser()
    existing = _nearest_existing(home)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    where = f"PREFECT_HOME={given}" if given else f"HOME={Path.home()} (Prefect's home {home})"
    fix = "set PREFECT_HOME to a writable directory" + (
        "" if given else " (e.g. PREFECT_HOME=/tmp/prefect), or HOME"
    )
    what = "is not a directory" if existing is not None and not existing.is_dir() else ""
    raise RuntimeFailure(f"{where}: {what or 'not writable'}; {fix}")


def check_environment() -> None:
    """Environment variables that would fail the run later (exit 1 now)."""
    from flows.threads import threads_from_env

    threads_from_env()
    check_prefect_home()


def check_data(out, cfg, plan, *, refresh: bool) -> None:
    """The data files, unless the prepared data set is current (then they are not read)."""
    from tasks.engine import manifest, preflight

    prepare = plan.of_step("prepare")[0]
    if refresh or not manifest.status(out, prepare).current:
        preflight.check_data(cfg.data)


def print_recomputed(nodes: dict) -> None:
    """One line per node rerun because its outputs no longer match their recorded hashes."""
    for node, record in nodes.items():
        reason = record.get("reason") or ""
        if record.get("state") != "Cached" and "changed on disk" in reason:
            print(f"pbrf: {node}: {reason}; recomputed", file=sys.stderr)


def check_budget(cfg, max_hours: float, yes: bool):
    """The run's estimate (:mod:`tasks.engine.forecast`); above ``max_hours`` it stops, before anything
    is created, unless ``yes`` (exit 2 naming both flags)."""
    from flows.threads import step_threads, study_parallel
    from tasks.engine.forecast import forecast

    if not math.isfinite(max_hours) or max_hours <= 0:
        raise ConfigError(f"--max-hours must be a positive number of hours, got {max_hours}")
    fc = forecast(cfg, threads=step_threads(study_parallel(cfg)))
    if fc.seconds > max_hours * 3600 and not yes:
        raise ConfigError(
            f"{fc.line()}: above --max-hours {max_hours:g}; pass --yes to run it anyway, "
            "raise --max-hours, or lower train.epochs or select.num_removals"
        )
    return fc


def runner_for(cfg, args: argparse.Namespace, seconds: float):
    """The task runner ``pbrf run`` uses: the Dask scheduler at ``--dask-address``, else a pool
    of ``--workers`` processes (default :func:`flows.runners.local_workers` for a study of
    ``seconds`` forecast training), else threads."""
    from flows.runners import local_workers, task_runner
    from flows.threads import study_parallel

    if getattr(args, "dask_address", None):
        return task_runner(args.dask_address)
    try:
        workers = local_workers(
            cfg.device, study_parallel(cfg), seconds, getattr(args, "workers", None)
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return task_runner(workers=workers)


def cmd_run(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply()
    if not args.verbose:
        settings.quiet_console()
    overrides = parse_overrides(args.set)
    device = {"device": args.device} if args.device else {}
    cfg = config_from(args, device)  # validate before starting anything
    check_device(cfg.device)
    check_environment()
    fc = check_budget(cfg, getattr(args, "max_hours", 2.0), getattr(args, "yes", False))
    from flows.decomposition import DecompositionParams

    params = DecompositionParams(
        preset=args.preset or DecompositionParams().preset,
        scale=args.scale,
        overrides=overrides,
        out=args.out,
        device=args.device,
        refresh=args.refresh,
    )
    out = params.out_dir()
    check_out_dir(out)
    from flows.decomposition import decomposition
    from flows.supervise import progress_phrase, run_study_command
    from tasks.engine.plan import build_plan

    plan = build_plan(cfg.model_dump(mode="json"))
    check_data(out, cfg, plan, refresh=args.refresh)
    options = {"task_runner": runner_for(cfg, args, fc.seconds)}
    result, wall = run_study_command(
        decomposition,
        params,
        out,
        f"pbrf run {params.preset} [{fc.short()}]",
        lambda: progress_phrase(out, plan),
        **options,
    )
    print_recomputed(result["nodes"])
    print()
    print_table(
        [
            [k, v["state"], f"{v['seconds']:.1f}" if v["state"] != "Cached" else "—"]
            for k, v in result["nodes"].items()
        ],
        ["node", "state", "seconds"],
    )
    from flows.cli.summary import print_results

    warnings = print_results(out, cfg)
    print(f"\nreport: {out / 'report' / 'report.md'}\nwall time {wall:.1f} s")
    link = run_link(result.get("flow_run_id"))
    if link:
        print(f"Prefect UI: {link}")
    if args.strict and warnings:
        print(f"pbrf: --strict: {len(warnings)} warning(s) above", file=sys.stderr)
        return 1
    return 0


def run_link(flow_run_id: str | None) -> str | None:
    """The flow run's page in the Prefect UI, when the run went to a lasting server."""
    if not flow_run_id or not os.environ.get("PREFECT_API_URL"):
        return None  # the temporary server (and its UI) is gone when `pbrf run` exits
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=flow_run_id)
