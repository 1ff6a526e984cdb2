"""Step ``report``: Markdown tables (Table 5, Table 2), figures, DVC metrics and plot data.

Writes into ``<run>/report/``:

* ``report.md`` — gap table (mean ± std over removals, like Table 5), correlation table (like
  Table 2), horizons with a warning when they differ by more than 3× (GUIDE §4), solver record;
* ``figure1_test_loss_scatter.png`` — influence-predicted vs actual test-loss change under cold
  (LOO), warm and PBRF retraining (Figure 1 style);
* ``figure4_gaps.png`` — the five terms as bars with std error bars (Figure 4 style);
* ``metrics.json`` (DVC metrics), ``test_loss_changes.csv`` and ``gaps.csv`` (DVC plots).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pbrf.config import StudyConfig
from tasks import schemas
from tasks.artifacts import (
    atomic_path,
    provenance_comment,
    read_table,
    remove_stale_temps,
    write_json,
    write_text,
)
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout

GAP_TITLES = {
    "warm_start": "Warm-Start",
    "proximity": "Proximity",
    "non_convergence": "Non-Convergence",
    "linearization": "Linearization",
    "solver": "Solver",
}
VARIANT_TITLES = {
    "cold": "Cold-Start (LOO)",
    "warm": "Warm-Start",
    "proximal": "Proximal",
    "pbrf": "PBRF",
    "linearized_pbrf": "Linearized PBRF",
}
TABLE2_REFERENCES = ("cold", "warm", "pbrf")


class Results:
    """The aggregate tables of one run, checked against the config."""

    def __init__(self, out: Path | str, cfg: StudyConfig):
        self.layout, self.cfg = RunLayout(out), cfg
        h = config_hash(cfg, "aggregate")

        def read(name: str, table: schemas.TableSchema) -> pd.DataFrame:
            return read_table(self.layout.aggregate(name), table, step="aggregate", config_hash=h)

        self.gaps = read("gaps", schemas.GAPS)
        self.correlations = read("correlations", schemas.CORRELATIONS)
        self.changes = read("test_loss_changes", schemas.TEST_LOSS_CHANGES)
        self.horizons: dict[str, Any] = read("horizons", schemas.HORIZONS).iloc[0].to_dict()

    def wide_changes(self) -> pd.DataFrame:
        wide = self.changes.pivot(index="removal_id", columns="source", values="test_loss_change")
        cols = ["influence", *[v for v in VARIANT_TITLES if v in wide.columns]]
        return wide[cols].reset_index()

    def gap_cells(self) -> dict[str, str]:
        return {r.gap: f"{r.mean:.3f} ± {r.std:.3f}" for r in self.gaps.itertuples(index=False)}

    def output_scale(self) -> float | None:
        """E_x‖f(θˢ, x)‖ over the training inputs (the same for every gap row)."""
        return float(self.gaps["output_scale"].iloc[0]) if len(self.gaps) else None

    def metrics(self) -> dict[str, Any]:
        return {
            "experiment": self.cfg.name,
            "output_scale": _num(self.output_scale()),
            "config_hash": config_hash(self.cfg, "report"),
            "gaps": {
                r.gap: {"mean": _num(r.mean), "std": _num(r.std)}
                for r in self.gaps.itertuples(index=False)
            },
            "correlations": {
                r.reference: {"pearson": _num(r.pearson), "spearman": _num(r.spearman)}
                for r in self.correlations.itertuples(index=False)
            },
            "horizons": {
                "lissa": _num(self.horizons["lissa_horizon"]),
                "pbrf": _num(self.horizons["pbrf_horizon"]),
                "ratio": _num(self.horizons["ratio"]),
                "mismatch": bool(self.horizons["mismatch"]),
            },
        }


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def _fmt(x: Any, spec: str = ".3f") -> str:
    v = _num(x)
    return "n/a" if v is None else format(v, spec)


# --------------------------------------------------------------------------- markdown


def table5_markdown(res: Results) -> str:
    cells = res.gap_cells()
    cfg = res.cfg
    head = "| Model | Dataset | " + " | ".join(GAP_TITLES.values()) + " | Output scale |"
    sep = "|---|---|" + "---|" * (len(GAP_TITLES) + 1)
    row = f"| {cfg.model.name} | {cfg.data.name} | " + " | ".join(
        cells.get(g, "—") for g in GAP_TITLES
    )
    return "\n".join([head, sep, row + f" | {_fmt(res.output_scale(), '.3f')} |"])


def table2_markdown(res: Results) -> str:
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    refs = [v for v in VARIANT_TITLES if v in corr]
    lines = ["| Reference | Pearson | Spearman |", "|---|---|---|"]
    for v in refs:
        star = " *" if v in TABLE2_REFERENCES else ""
        lines.append(
            f"| {VARIANT_TITLES[v]}{star} | {_fmt(corr[v].pearson, '.2f')} | "
            f"{_fmt(corr[v].spearman, '.2f')} |"
        )
    return "\n".join(lines)


def horizon_markdown(res: Results) -> str:
    h = res.horizons
    lines = [
        f"- LiSSA: depth T = {_fmt(h['lissa_depth'], '.0f')}, scale σ = {_fmt(h['lissa_scale'], '.4g')}"
        f", horizon T/σ = {_fmt(h['lissa_horizon'], '.4g')}",
        f"- PBRF: learning rate η = {_fmt(h['pbrf_lr'], '.4g')}, steps S = "
        f"{_fmt(h['pbrf_steps'], '.0f')}, horizon η·S = {_fmt(h['pbrf_horizon'], '.4g')}",
        f"- {'**' if h['mismatch'] else ''}{h['message']}{'**' if h['mismatch'] else ''}",
    ]
    return "\n".join(lines)


def report_markdown(res: Results, solver: dict[str, Any], meta: dict[str, Any]) -> str:
    cfg = res.cfg
    return "\n".join(
        [
            provenance_comment("report", config_hash(cfg, "report")),
            f"# Influence misalignment decomposition — {cfg.name}",
            "",
            f"{cfg.model.name} on {cfg.data.name}: N = {meta['n_train']} training examples, "
            f"M = {cfg.retrain.num_removals} removals of {cfg.retrain.group_size} "
            f"(ε = 1/N), damping λ = {cfg.damping:g}, {cfg.dtype}, "
            f"config hash `{config_hash(cfg, 'report')}`.",
            "",
            "## Gaps (Table 5)",
            "",
            "Mean output distance E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training inputs, "
            "mean ± std over the removals.",
            "",
            table5_markdown(res),
            "",
            "## Test-loss change: influence vs retraining (Table 2)",
            "",
            "Correlation over the removals between the influence prediction ε∇L_testᵀ(G+λI)⁻¹g "
            "(Eq. 23) and the actual test-loss change of each retraining scheme "
            "(* = the paper's Table 2 columns).",
            "",
            table2_markdown(res),
            "",
            "## Horizons (GUIDE §4)",
            "",
            horizon_markdown(res),
            "",
            "## Influence solver",
            "",
            "- " + ", ".join(f"{k} = {_solver_value(v)}" for k, v in solver.items()),
            "",
            "## Figures",
            "",
            "![test-loss scatter](figure1_test_loss_scatter.png)",
            "",
            "![gaps](figure4_gaps.png)",
            "",
        ]
    )


def _solver_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- figures


def _save(fig: Figure, path: Path, cfg: StudyConfig) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format="png",
            dpi=120,
            metadata={"Software": None, "Description": f"pbrf {config_hash(cfg, 'report')}"},
        )


def scatter_figure(res: Results, path: Path) -> None:
    wide = res.wide_changes()
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    refs = [v for v in TABLE2_REFERENCES if v in wide.columns]
    fig = Figure(figsize=(4.2 * max(1, len(refs)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(refs)), squeeze=False)[0]
    x = wide["influence"].to_numpy()
    for ax, v in zip(axes, refs, strict=False):
        y = wide[v].to_numpy()
        ax.scatter(x, y, s=18, alpha=0.8)
        xlim, ylim = ax.get_xlim(), ax.get_ylim()  # own scale per panel, as in Figure 1
        lo, hi = max(xlim[0], ylim[0]), min(xlim[1], ylim[1])
        if lo < hi:  # the identity y = x where the two ranges overlap
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="y = x")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_xlabel("influence: predicted test-loss change")
        ax.set_ylabel(f"{VARIANT_TITLES[v]}: actual change")
        ax.set_title(
            f"{VARIANT_TITLES[v]}  P={_fmt(corr[v].pearson, '.2f')} S={_fmt(corr[v].spearman, '.2f')}"
        )
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    fig.suptitle(f"{res.cfg.name}: influence vs retraining (Figure 1 style)")
    _save(fig, path, res.cfg)


def gaps_figure(res: Results, path: Path) -> None:
    g = res.gaps.set_index("gap")
    names = [n for n in GAP_TITLES if n in g.index]
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(
        [GAP_TITLES[n] for n in names],
        [g.loc[n, "mean"] for n in names],
        yerr=[g.loc[n, "std"] for n in names],
        capsize=4,
        color=["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"][: len(names)],
    )
    ax.set_ylabel("E‖f(θ_a,x) − f(θ_b,x)‖ (train)")
    ax.set_title(f"{res.cfg.name}: decomposition (Figure 4 style)")
    ax.tick_params(axis="x", labelrotation=15)
    _save(fig, path, res.cfg)


# --------------------------------------------------------------------------- step


def report(out: Path | str, cfg: StudyConfig) -> list[Path]:
    layout = RunLayout(out)
    remove_stale_temps(layout.report_dir)
    res = Results(out, cfg)
    solver = (
        read_table(
            layout.solver,
            schemas.SOLVER,
            step="influence",
            config_hash=config_hash(cfg, "influence"),
        )
        .iloc[0]
        .to_dict()
    )
    meta = {"n_train": round(1.0 / float(solver["epsilon"]))}
    d = layout.report_dir
    scatter_figure(res, d / "figure1_test_loss_scatter.png")
    gaps_figure(res, d / "figure4_gaps.png")
    # every variant gets a column (empty when not run), so the DVC plot spec always applies
    wide = res.wide_changes()
    _write_csv(
        wide.reindex(columns=["removal_id", "influence", *VARIANT_TITLES]),
        d / "test_loss_changes.csv",
    )
    _write_csv(res.gaps[["gap", "mean", "std", "n"]], d / "gaps.csv")
    write_json(layout.metrics, res.metrics())
    write_text(layout.report_md, report_markdown(res, solver, meta))  # last: marks completion
    return layout.outputs("report")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    write_text(
        path, df.to_csv(index=False, float_format=lambda v: repr(float(v)), lineterminator="\n")
    )
