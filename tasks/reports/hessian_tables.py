"""Tables 4 and 7 beside Tables 5 and 6 (Appendix F.1): one study run twice, with influence
from the Gauss-Newton Hessian and from the Hessian, assembled with the paper's rows.

* Table 5 / Table 4 — the five gaps, GNH and Hessian influence;
* Table 6 / Table 7 — correlation of influence-predicted and actual test-loss changes under
  cold start, warm start and the PBRF;
* Table 8 — two-stage LOO beside warm start and the PBRF, when ``two_stage`` ran.

Only the influence estimate (and what derives from it: LiSSA's σ, hence a matched PBRF horizon)
differs between the two runs; the cold, warm and proximal optima are the same computation, so
the first two gaps agree exactly, as in the paper's Tables 4 and 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.engine.runner import read_run_config
from tasks.reports.paper import paper_correlations, paper_gaps, paper_row
from tasks.reports.results import GAP_TITLES, Results, corr_cell, fmt, gap_cell, num

CURVATURES = ("gnh", "hessian")
GAP_TABLE = {"gnh": "5", "hessian": "4"}
CORRELATION_TABLE = {"gnh": "6", "hessian": "7"}
CORRELATION_COLUMNS = {"cold": "Cold-Start", "warm": "Warm-Start", "pbrf": "PBRF"}
TABLE8_COLUMNS = {"two_stage": "Two-Stage LOO", "warm": "Warm-Start", "pbrf": "PBRF"}
LABEL = {"gnh": "GNH", "hessian": "Hessian"}


def read_pair(gnh: Path | str, hessian: Path | str) -> dict[str, Results]:
    """The finished runs (stamps checked) of the GNH and the Hessian study."""
    runs = {"gnh": Path(gnh), "hessian": Path(hessian)}
    out = {}
    for curvature, root in runs.items():
        cfg = read_run_config(root)
        if cfg.influence.curvature != curvature:
            raise ValueError(
                f"{root} ran with influence.curvature={cfg.influence.curvature}, "
                f"expected {curvature}"
            )
        out[curvature] = Results.read(root, cfg)
    a, b = (out[c].cfg.model_dump(mode="json") for c in CURVATURES)
    a["influence"].pop("curvature")
    b["influence"].pop("curvature")
    if a != b:
        diff = sorted(k for k in a if a[k] != b[k])
        raise ValueError(f"the two runs differ beyond influence.curvature (in {diff})")
    return out


def gaps_markdown(runs: dict[str, Results]) -> str:
    cfg = runs["gnh"].cfg
    model, dataset, _ = paper_row(cfg)
    head = "| Table | influence | " + " | ".join(GAP_TITLES.values()) + " |"
    lines = [head, "|---|---|" + "---|" * len(GAP_TITLES)]
    for c in CURVATURES:
        cells = {r.gap: gap_cell(r) for r in runs[c].gaps.itertuples(index=False)}
        lines.append(
            f"| {GAP_TABLE[c]} (ours) | {LABEL[c]} | "
            + " | ".join(cells.get(g, "—") for g in GAP_TITLES)
            + " |"
        )
    for c in CURVATURES:
        paper = paper_gaps(model, dataset, GAP_TABLE[c]) if dataset else {}
        if paper:
            lines.append(
                f"| {GAP_TABLE[c]} (paper, {model}/{dataset}) | {LABEL[c]} | "
                + " | ".join(_paper_gap(paper.get(g)) for g in GAP_TITLES)
                + " |"
            )
    return "\n".join(lines)


def _paper_gap(v: Any) -> str:
    return f"{fmt(v.get('mean'))} ± {fmt(v.get('std'))}" if v else "—"


def correlations_markdown(
    runs: dict[str, Results],
    columns: dict[str, str],
    tables: dict[str, str],
    paper_tables: dict[str, str | None] | None = None,
) -> str:
    """Our rows (labelled by ``tables``), then the paper's rows of ``paper_tables`` (default:
    the same tables; ``None`` leaves a curvature's paper row out)."""
    paper_tables = tables if paper_tables is None else paper_tables
    cfg = runs["gnh"].cfg
    model, dataset, _ = paper_row(cfg)
    head = "| Table | influence | " + " | ".join(f"{t} P | {t} S" for t in columns.values())
    lines = [head + " |", "|---|---|" + "---|---|" * len(columns)]
    for c in CURVATURES:
        corr = {r.reference: r for r in runs[c].correlations.itertuples(index=False)}
        cells = [
            f"{corr_cell(corr[k].pearson, corr[k].pearson_low, corr[k].pearson_high)} | "
            f"{corr_cell(corr[k].spearman, corr[k].spearman_low, corr[k].spearman_high)}"
            if k in corr
            else "— | —"
            for k in columns
        ]
        lines.append(f"| {tables[c]} (ours) | {LABEL[c]} | " + " | ".join(cells) + " |")
    for c in CURVATURES:
        table = paper_tables[c]
        if table is None or not dataset:
            continue
        paper = paper_correlations(model, dataset, table)
        if paper:
            cells = [
                f"{fmt(paper.get(k, {}).get('pearson'), '.2f')} | "
                f"{fmt(paper.get(k, {}).get('spearman'), '.2f')}"
                for k in columns
            ]
            lines.append(
                f"| {table} (paper, {model}/{dataset}) | {LABEL[c]} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def solver_lines(runs: dict[str, Results]) -> list[str]:
    out = []
    for c in CURVATURES:
        s = runs[c].solver
        out.append(
            f"- {LABEL[c]}: {s.get('solver')} (damping {fmt(s.get('damping'), 'g')}, "
            f"λ_max {fmt(s.get('top_eigenvalue'), '.4g')}, scale σ {fmt(s.get('scale'), '.4g')}, "
            f"horizon T/σ {fmt(s.get('horizon'), '.4g')}); converged: {bool(s.get('converged'))}"
        )
    return out


def comparison_markdown(runs: dict[str, Results], dirs: dict[str, str]) -> str:
    cfg = runs["gnh"].cfg
    model, dataset, note = paper_row(cfg)
    two_stage = all("two_stage" in runs[c].cfg.retrain.variants for c in CURVATURES)
    parts = [
        f"# Gauss-Newton Hessian vs Hessian — {cfg.name}",
        "",
        f"The same study ({cfg.model.name} on {cfg.data.name}, M = {cfg.select.num_removals}, "
        f"damping λ = {cfg.damping:g}) with influence from the Gauss-Newton Hessian "
        f"({dirs['gnh']}) and from the Hessian ({dirs['hessian']}): Tables 5 and 6 beside "
        "Tables 4 and 7 (Appendix F.1). Intervals are 95 % bootstrap intervals over the "
        "removals."
        + (f" Paper rows: {model}/{dataset}" + (f" ({note})." if note else ".") if dataset else ""),
        "",
        "## Gaps: Table 5 (GNH) and Table 4 (Hessian)",
        "",
        "Mean output distance over the training inputs, mean ± std [95 % interval]. Cold, "
        "warm and proximal optima do not depend on the curvature, so Warm-Start and Proximity "
        "agree; with a matched horizon the PBRF follows each run's LiSSA σ.",
        "",
        gaps_markdown(runs),
        "",
        "## Correlations: Table 6 (GNH) and Table 7 (Hessian)",
        "",
        "Pearson (P) and Spearman (S) correlation over the removals between the influence "
        "prediction of the test-loss change and the actual change under each retraining.",
        "",
        correlations_markdown(runs, CORRELATION_COLUMNS, CORRELATION_TABLE),
        "",
    ]
    if two_stage:
        parts += [
            "## Two-stage LOO: Table 8",
            "",
            "The paper's Table 8 repeats its Table 7 Warm-Start and PBRF columns (Hessian "
            "influence); its row is shown beside our Hessian run.",
            "",
            correlations_markdown(
                runs, TABLE8_COLUMNS, {"gnh": "8", "hessian": "8"}, {"gnh": None, "hessian": "8"}
            ),
            "",
        ]
    parts += ["## Influence solves", "", *solver_lines(runs), ""]
    return "\n".join(parts)


def comparison_tables(runs: dict[str, Results]) -> dict[str, list[dict[str, Any]]]:
    """Rows for Prefect table artifacts: gaps and correlations of both runs (ours only)."""
    gaps, corr = [], []
    for c in CURVATURES:
        for r in runs[c].gaps.itertuples(index=False):
            gaps.append(
                {
                    "table": GAP_TABLE[c],
                    "curvature": c,
                    "gap": r.gap,
                    "mean": num(r.mean, 4),
                    "std": num(r.std, 4),
                    "ci": f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
                }
            )
        for r in runs[c].correlations.itertuples(index=False):
            if r.reference not in (*CORRELATION_COLUMNS, "two_stage"):
                continue
            corr.append(
                {
                    "table": "8" if r.reference == "two_stage" else CORRELATION_TABLE[c],
                    "curvature": c,
                    "reference": r.reference,
                    "pearson": num(r.pearson, 3),
                    "pearson_ci": f"[{fmt(r.pearson_low, '.2f')}, {fmt(r.pearson_high, '.2f')}]",
                    "spearman": num(r.spearman, 3),
                    "spearman_ci": f"[{fmt(r.spearman_low, '.2f')}, {fmt(r.spearman_high, '.2f')}]",
                }
            )
    return {"gaps": gaps, "correlations": corr}
