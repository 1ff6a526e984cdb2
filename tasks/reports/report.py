"""Step ``report``: Markdown (Table 5, Table 2, horizons, precision, convergence), figures,
DVC metrics and plot data, with the paper's values beside ours.

Writes into ``<run>/report/``:

* ``report.md`` — every table with its intervals and the paper's row where there is one;
* ``figure1_test_loss_scatter.png`` — influence-predicted vs actual test-loss change under cold
  (LOO), warm and PBRF retraining (Figure 1 style);
* ``figure4_gaps.png`` — the five terms as bars with their bootstrap intervals (Figure 4 style);
* ``metrics.json`` (DVC metrics), ``test_loss_changes.csv`` and ``gaps.csv`` (DVC plots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks import schemas
from tasks.engine.artifacts import atomic_path, write_json, write_text
from tasks.engine.context import StepContext
from tasks.reports.grade_report import grading_markdown
from tasks.reports.paper import (
    MATCHED_LABEL,
    PAPER_SETTING_LABEL,
    gap_table,
    paper_gaps,
    paper_row,
    paper_table2,
)
from tasks.reports.results import (
    GAP_TITLES,
    PAPER_PAIRS,
    PAPER_SETTING_GAPS,
    SOURCE_TITLES,
    TABLE2_REFERENCES,
    Results,
    corr_cell,
    fmt,
    gap_cell,
)

METHOD_DOC = "docs/method.md in the pbrf repository"

# --------------------------------------------------------------------------- markdown


def table5_markdown(res: Results) -> str:
    """Table 5 transposed to fit a page, one row per gap: ours through the paper-setting PBRF
    (beside the paper's row: Table 5, or Table 4 for the full Hessian), ours through the
    horizon-matched PBRF (this project's added row), and the paper's."""
    cfg = res.cfg
    cells = {r.gap: gap_cell(r) for r in res.gaps.itertuples(index=False)}
    model, dataset, _ = paper_row(cfg)
    table = gap_table(cfg)
    paper = paper_gaps(model, dataset, table) if dataset else {}
    heading = (
        f"Ours: {cfg.model.name} on {cfg.data.name}, output scale {fmt(res.output_scale())}"
        + (f"; paper: {model} on {dataset} (Table {table})." if paper else ".")
    )
    columns = (
        [(PAPER_SETTING_LABEL, lambda g: cells.get(PAPER_SETTING_GAPS[g], "—"))]
        if "non_convergence_paper" in cells
        else []
    )
    columns.append((MATCHED_LABEL, lambda g: cells.get(g, "—")))
    if paper:
        columns.append((f"paper (Table {table})", lambda g: _paper_gap(paper.get(g))))
    lines = [
        heading,
        "",
        "| Gap | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for g, title in GAP_TITLES.items():
        lines.append(f"| {title} | " + " | ".join(cell(g) for _, cell in columns) + " |")
    return "\n".join(lines)


def _paper_gap(v: Any) -> str:
    if not v:
        return "—"
    return f"{fmt(v.get('mean'))} ± {fmt(v.get('std'))}"


def table2_markdown(res: Results) -> str:
    model, dataset, _ = paper_row(res.cfg)
    table, paper = paper_table2(model, dataset, res.cfg.influence.curvature)
    head = "| Reference | Pearson [95 % CI] | Spearman [95 % CI] | most influential removal |"
    lines = [
        head + (f" paper P / S (Table {table}) |" if paper else ""),
        "|---|---|---|---|" + ("---|" if paper else ""),
    ]
    order = [s for s in SOURCE_TITLES if s in set(res.correlations["reference"])]
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    for ref in order:
        r = corr[ref]
        star = " *" if ref in TABLE2_REFERENCES else ""
        jk = (
            f"#{int(r.pearson_jackknife_removal)}: P {r.pearson_jackknife_change:+.2f}"
            if pd.notna(r.pearson_jackknife_removal)
            else "—"
        )
        row = (
            f"| {SOURCE_TITLES[ref]}{star}{' ⚠ rounding floor' if r.at_rounding_floor else ''} | "
            f"{corr_cell(r.pearson, r.pearson_low, r.pearson_high)} | "
            f"{corr_cell(r.spearman, r.spearman_low, r.spearman_high)} | {jk} |"
        )
        if paper:
            p = paper.get(PAPER_PAIRS.get(ref, ""), {})
            row += (
                f" {fmt(p.get('pearson'), '.2f')} / {fmt(p.get('spearman'), '.2f')} |"
                if p
                else " — |"
            )
        lines.append(row)
    return "\n".join(lines)


def horizons_markdown(res: Results) -> str:
    lines = [
        "| PBRF | setting | η | epochs | steps S | η·S | LiSSA T/σ | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res.horizons.itertuples(index=False):
        lines.append(
            f"| {SOURCE_TITLES[r.variant]} | {r.setting} | {fmt(r.lr, '.4g')} | {r.epochs} | "
            f"{r.steps} | {fmt(r.horizon, '.4g')} | {fmt(r.lissa_horizon, '.4g')} | "
            f"{fmt(r.ratio, '.2f')} |"
        )
    lines += ["", *[f"- {r.message}" for r in res.horizons.itertuples(index=False)]]
    return "\n".join(lines)


def precision_markdown(res: Results) -> str:
    lines = [
        "| source | trained in | min ‖Δ‖/‖ulp(θˢ)‖ | max share of coordinates < ½ ulp | "
        "median \\|ΔL\\| in ulps of L |",
        "|---|---|---|---|---|",
    ]
    for r in res.precision.itertuples(index=False):
        title = SOURCE_TITLES.get(
            r.source, "Influence (Δ_IF)" if r.source == "influence" else r.source
        )
        lines.append(
            f"| {title} | {r.train_dtype} | {fmt(r.min_response_ulps, '.3g')} | "
            f"{fmt(r.max_vanishing_fraction, '.1%')} | {fmt(r.median_loss_change_ulps, '.3g')} |"
        )
    return "\n".join(lines)


def convergence_markdown(res: Results) -> str:
    lines = ["| source | epochs / iterations | max share of decrease in last 10 % | note |"]
    lines.append("|---|---|---|---|")
    for r in res.convergence.itertuples(index=False):
        title = SOURCE_TITLES.get(r.source, r.source)
        lines.append(
            f"| {title} | {fmt(r.epochs, '.0f')} | {fmt(r.max_tail_decrease, '.1%')} | "
            f"{r.message or 'settled'} |"
        )
    return "\n".join(lines)


def report_markdown(res: Results, meta: dict[str, Any]) -> str:
    cfg = res.cfg
    warnings = res.warnings()
    model, dataset, note = paper_row(cfg)
    parts = [
        f"# Influence misalignment decomposition — {cfg.name}",
        "",
        f"{cfg.model.name} on {cfg.data.name}: N = {meta['n_train']} training examples, "
        f"M = {cfg.select.num_removals} removals of {cfg.select.size(meta['n_train'])} "
        f"(ε = 1/N), damping "
        f"λ = {cfg.damping:g}; trained in {cfg.dtype}, evaluated in {cfg.eval_dtype}; "
        f"{meta['threads']} thread(s) on {meta['device']}. Intervals are 95 % bootstrap "
        f"intervals over the M removals. Method: {METHOD_DOC}.",
        "",
    ]
    if warnings:
        parts += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    parts += [
        "## Gaps (Table 5)",
        "",
        "Mean output distance E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training inputs: mean ± std "
        "[95 % interval of the mean] over the removals. The paper's row stands beside ours "
        "through the PBRF and linearized PBRF trained as the paper did (K/2 epochs at lr/10); "
        "the row through the horizon-matched PBRF is this project's addition."
        + (f" Paper row: {model}/{dataset}" + (f" ({note})." if note else ".") if dataset else ""),
        "",
        table5_markdown(res),
        "",
        "## Test-loss change: influence vs retraining (Table 2)",
        "",
        "Correlation over the removals between the influence prediction ε∇L_testᵀ(G+λI)⁻¹g "
        "(Eq. 23) and the actual test-loss change of each retraining scheme (* = the paper's "
        "Table 2 columns; the paper's PBRF column stands beside the PBRF trained as the paper "
        "did, K/2 epochs at lr/10; the horizon-matched PBRF is this project's added row); the "
        "last column names the removal whose omission moves Pearson most.",
        "",
        table2_markdown(res),
        "",
        "## Horizons",
        "",
        "LiSSA acts like T gradient steps of size 1/σ (horizon T/σ); S steps of SGD at rate η "
        "reach η·S. Influence and a PBRF answer the same question only when the two agree.",
        "",
        horizons_markdown(res),
        "",
        "## Precision",
        "",
        "Responses are stored as displacements Δ = θ − θˢ and evaluated in "
        f"{cfg.eval_dtype}. The columns say how far each response stands above the rounding "
        f"unit (ulp) of {cfg.dtype}: a coordinate with |Δᵢ| < ½ ulp(θˢᵢ) would vanish if the "
        "response were stored as θ.",
        "",
        precision_markdown(res),
        "",
        "## Convergence",
        "",
        convergence_markdown(res),
        "",
        "## Influence solver",
        "",
        "- " + ", ".join(f"{k} = {_value(v)}" for k, v in res.solver.items() if _value(v) != "—"),
        "",
        "## Figures",
        "",
        "![test-loss scatter](figure1_test_loss_scatter.png)",
        "",
        "![gaps](figure4_gaps.png)",
        "",
    ]
    return "\n".join(parts)


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v) or v == "":
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- figures


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})


def scatter_figure(res: Results, path: Path) -> None:
    wide = res.wide_changes()
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    refs = [v for v in ("cold", "warm", "pbrf", "pbrf_paper", "two_stage") if v in wide.columns]
    fig = Figure(figsize=(4.0 * max(1, len(refs)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(refs)), squeeze=False)[0]
    x = wide["influence"].to_numpy()
    for ax, v in zip(axes, refs, strict=False):
        y = wide[v].to_numpy()
        ax.scatter(x, y, s=18, alpha=0.8)
        xlim, ylim = ax.get_xlim(), ax.get_ylim()  # own scale per panel, as in Figure 1
        lo, hi = max(xlim[0], ylim[0]), min(xlim[1], ylim[1])
        if lo < hi:
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="y = x")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_xlabel("influence: predicted test-loss change")
        ax.set_ylabel(f"{SOURCE_TITLES[v]}: actual change")
        r = corr[v]
        ax.set_title(f"{SOURCE_TITLES[v]}\nP={fmt(r.pearson, '.2f')} S={fmt(r.spearman, '.2f')}")
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    fig.suptitle(f"{res.cfg.name}: influence vs retraining (Figure 1 style)")
    _save(fig, path)


def gaps_figure(res: Results, path: Path) -> None:
    g = res.gaps.set_index("gap")
    names = [n for n in GAP_TITLES if n in g.index]
    means = [g.loc[n, "mean"] for n in names]
    err = [
        [m - g.loc[n, "ci_low"] for n, m in zip(names, means, strict=True)],
        [g.loc[n, "ci_high"] - m for n, m in zip(names, means, strict=True)],
    ]
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(
        [GAP_TITLES[n] for n in names],
        means,
        yerr=err,
        capsize=4,
        color=["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"][: len(names)],
    )
    ax.set_ylabel("E‖f(θ_a,x) − f(θ_b,x)‖ (train), 95 % CI")
    ax.set_title(f"{res.cfg.name}: decomposition (Figure 4 style)")
    ax.tick_params(axis="x", labelrotation=15)
    _save(fig, path)


# --------------------------------------------------------------------------- step


def report(ctx: StepContext) -> None:
    res = Results.read(ctx.root, ctx.cfg, ctx.plan)
    conv = res.convergence
    meta = {
        "n_train": round(1.0 / float(res.solver["epsilon"])),
        "threads": "/".join(str(t) for t in sorted(set(conv["threads"].dropna().astype(int)))),
        "device": "/".join(sorted(set(conv["device"].dropna()))),
    }
    scatter_figure(res, ctx.output_path("figure1"))
    gaps_figure(res, ctx.output_path("figure4"))
    # every source gets a column (empty when not run), so the DVC plot spec always applies
    wide = res.wide_changes().reindex(columns=["removal_id", "influence", *SOURCE_TITLES])
    _write_csv(wide, ctx.output_path("changes_csv"))
    _write_csv(res.gaps[["gap", "mean", "ci_low", "ci_high", "n"]], ctx.output_path("gaps_csv"))
    from tasks.reports.study_sections import study_metrics, study_sections

    write_json(ctx.output_path("metrics"), {**res.metrics(), **study_metrics(ctx)})
    text = report_markdown(res, meta) + study_sections(ctx, res)
    if any(key.startswith("grades[") for key in ctx.node.inputs):  # grade.estimators is set
        grades = ctx.read_table("grades", schemas.GRADES)
        text += "\n" + grading_markdown(grades, ctx.cfg.grade.rank_by)
    write_text(ctx.output_path("report_md"), text)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    write_text(
        path, df.to_csv(index=False, float_format=lambda v: repr(float(v)), lineterminator="\n")
    )
