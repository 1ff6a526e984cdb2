"""``pbrf`` command line.

    pbrf run [PRESET] [--set key=value ...] [--device cpu|cuda] [--out DIR] [--refresh]
    pbrf presets
    pbrf report DIR
    pbrf step STEP [--variant V] [--params params.yaml] [--out artifacts] [--data-dir data]
    pbrf data export DIR
    pbrf params [PRESET] [--set key=value ...] [-o params.yaml]

``run`` executes the Prefect flow (on Prefect's temporary local server unless ``PREFECT_API_URL``
is set); ``step`` runs one step function directly — what the DVC stages call, no Prefect.
Configuration errors exit with status 2, run-time failures (divergence, bad artifacts) with 1,
each as one readable paragraph without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

EXIT_RUNTIME, EXIT_CONFIG = 1, 2


class CLIError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- helpers


def _overrides(items: list[str]) -> dict[str, Any]:
    from pbrf.presets import parse_override

    out = {}
    for item in items:
        path, value = parse_override(item)
        out[".".join(path)] = value
    return out


def _load_params_file(path: str, overrides: dict[str, Any]):
    import yaml

    from pbrf.config import StudyConfig
    from pbrf.presets import apply_overrides

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"parameter file {p} not found", EXIT_CONFIG)
    data = yaml.safe_load(p.read_text()) or {}
    return StudyConfig.model_validate(apply_overrides(data, overrides))


def _fmt(x: Any, spec: str = ".3f") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if v != v else format(v, spec)


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def print_results(out: Path, cfg) -> None:
    from tasks.report import GAP_TITLES, VARIANT_TITLES, Results

    res = Results(out, cfg)
    print()
    _print_table(
        [
            [GAP_TITLES[r.gap], f"{_fmt(r.mean)} ± {_fmt(r.std)}"]
            for r in res.gaps.itertuples(index=False)
        ],
        ["gap (Table 5)", "mean ± std"],
    )
    print()
    _print_table(
        [
            [VARIANT_TITLES[r.reference], _fmt(r.pearson, ".2f"), _fmt(r.spearman, ".2f")]
            for r in res.correlations.itertuples(index=False)
        ],
        ["influence vs (Table 2)", "pearson", "spearman"],
    )
    print()
    print(f"horizons: {res.horizons['message']}")


# --------------------------------------------------------------------------- commands


def cmd_presets(args: argparse.Namespace) -> int:
    from pbrf.presets import DEFAULT_PRESET, PRESETS, load_preset

    rows = []
    for name in PRESETS:
        c = load_preset(name)
        rows.append(
            [
                name + (" (default)" if name == DEFAULT_PRESET else ""),
                c.data.name,
                c.model.name,
                f"{c.train.optimizer}, {c.train.epochs} ep",
                str(c.retrain.num_removals),
                f"{c.influence.solver} T={c.influence.depth}",
            ]
        )
    _print_table(rows, ["preset", "data", "model", "training", "removals", "influence"])
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    import yaml

    from pbrf.presets import DEFAULT_PRESET, load_preset

    cfg = load_preset(args.preset or DEFAULT_PRESET, _overrides(args.set))
    text = (
        "# Full StudyConfig for the DVC pipeline (dvc.yaml); regenerate with `pbrf params`.\n"
        + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    if args.output:
        from tasks.artifacts import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from tasks.datafiles import export

    for p in export(args.dir):
        print(p)
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    from tasks.runtime import configure_threads
    from tasks.steps import run_step, write_config

    overrides = _overrides(args.set)
    if args.device:
        overrides["device"] = args.device
    cfg = _load_params_file(args.params, overrides)
    configure_threads(1)
    write_config(args.out, cfg)
    record = run_step(args.step, args.out, cfg, variant=args.variant, data_dir=args.data_dir)
    print(json.dumps(record))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tasks.steps import read_config, run_step

    out = Path(args.dir)
    cfg = read_config(out)
    run_step("report", out, cfg)
    print_results(out, cfg)
    print(f"\nreport: {out / 'report' / 'report.md'}")
    return 0


def _server_start_seconds() -> float:
    """Reach the Prefect API once (starting the temporary server if none is configured)."""
    from prefect.client.orchestration import get_client

    start = time.perf_counter()
    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    return time.perf_counter() - start


def cmd_run(args: argparse.Namespace) -> int:
    from flows import settings

    settings.apply(verbose=args.verbose)
    from flows.decomposition import DecompositionParams

    params = DecompositionParams(
        preset=args.preset or DecompositionParams().preset,
        overrides=_overrides(args.set),
        out=args.out,
        device=args.device,
        refresh=args.refresh,
    )
    cfg = params.config()  # validate before starting anything
    out = params.out_dir()
    t0 = time.perf_counter()
    where = os.environ.get("PREFECT_API_URL") or "temporary local Prefect server"
    print(f"pbrf run {params.preset} → {out}  ({where})", file=sys.stderr)
    server = _server_start_seconds()
    from flows.decomposition import decomposition

    result = decomposition(params)
    wall = time.perf_counter() - t0
    print()
    _print_table(
        [
            [k, v["state"], _fmt(v["seconds"], ".1f") if v["state"] != "Cached" else "—"]
            for k, v in result["steps"].items()
        ],
        ["step", "state", "seconds"],
    )
    print_results(out, cfg)
    print(
        f"\nreport: {out / 'report' / 'report.md'}\n"
        f"wall time {wall:.1f} s (Prefect API/server start {server:.1f} s)"
    )
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pbrf",
        description="Influence functions vs leave-one-out retraining: the five-term "
        "decomposition of Bae et al. (2022).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add_set(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value (YAML syntax), e.g. --set train.lr=0.05; repeatable",
        )

    r = sub.add_parser("run", help="run the decomposition study (Prefect flow)")
    r.add_argument("preset", nargs="?", help="preset name (see `pbrf presets`)")
    add_set(r)
    r.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    r.add_argument("--out", help="run directory (default runs/<preset>)")
    r.add_argument("--refresh", action="store_true", help="recompute every step (ignore cache)")
    r.add_argument("--verbose", action="store_true", help="show Prefect's run logs")
    r.set_defaults(func=cmd_run)

    sp = sub.add_parser("presets", help="list the presets")
    sp.set_defaults(func=cmd_presets)

    rp = sub.add_parser("report", help="rebuild report/ of a run directory")
    rp.add_argument("dir", help="run directory (contains config.json)")
    rp.set_defaults(func=cmd_report)

    from tasks.fingerprint import STEPS

    st = sub.add_parser("step", help="run one pipeline step (used by dvc.yaml)")
    st.add_argument("step", choices=STEPS)
    st.add_argument("--variant", help="retraining variant (step retrain)")
    st.add_argument("--params", default="params.yaml", help="full config YAML (params.yaml)")
    st.add_argument("--out", default="artifacts", help="artifact directory")
    st.add_argument("--data-dir", help="read data/<name>.csv instead of scikit-learn (prepare)")
    st.add_argument("--device", help="cpu, cuda or cuda:N (overrides the params file)")
    add_set(st)
    st.set_defaults(func=cmd_step)

    d = sub.add_parser("data", help="data directory tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    ex = dsub.add_parser("export", help="write the bundled data sets as CSV (deterministic)")
    ex.add_argument("dir", help="target directory, e.g. data")
    ex.set_defaults(func=cmd_data)

    pa = sub.add_parser("params", help="print or write a full config (params.yaml) for a preset")
    pa.add_argument("preset", nargs="?")
    add_set(pa)
    pa.add_argument("-o", "--output", help="write to this file instead of stdout")
    pa.set_defaults(func=cmd_params)
    return p


def _validation_message(exc: Exception) -> str:
    errors = exc.errors()  # type: ignore[attr-defined]
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if not str(x).startswith("function-"))
        got = (
            f" (got {e['input']!r})" if e.get("type") != "extra_forbidden" and "input" in e else ""
        )
        parts.append(f"{loc or 'config'}: {e.get('msg')}{got}")
    return "invalid configuration — " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"pbrf: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("pbrf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report_error(exc)


def _report_error(exc: Exception) -> int:
    from pydantic import ValidationError

    from pbrf.solvers import LissaDivergenceError
    from pbrf.trainer import NonFiniteLossError
    from tasks.artifacts import ArtifactError

    if isinstance(exc, ValidationError):
        print(f"pbrf: error: {_validation_message(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(
        exc, (NonFiniteLossError, LissaDivergenceError, ArtifactError, FileNotFoundError)
    ):
        print(f"pbrf: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if isinstance(exc, (ValueError, TypeError)):
        print(f"pbrf: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    raise exc


if __name__ == "__main__":
    sys.exit(main())
