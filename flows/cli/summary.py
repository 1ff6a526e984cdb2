"""The results summary ``pbrf run`` and ``pbrf report`` print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.cli.table import print_table


def print_results(out: Path, cfg: Any) -> list[str]:
    """Print Table 5, Table 2 (with intervals), horizons and warnings; return the warnings."""
    from tasks.reports.results import ALL_GAP_TITLES, SOURCE_TITLES, Results, corr_cell, fmt

    res = Results.read(out, cfg)
    print()
    print_table(
        [
            [
                ALL_GAP_TITLES.get(r.gap, r.gap),
                f"{fmt(r.mean)} ± {fmt(r.std)}",
                f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
            ]
            for r in res.gaps.itertuples(index=False)
        ],
        ["gap (Table 5)", "mean ± std", "95 % CI of mean"],
    )
    print(f"output scale E‖f(θˢ, x)‖ = {fmt(res.output_scale())}")
    print()
    print_table(
        [
            [
                SOURCE_TITLES.get(r.reference, r.reference),
                corr_cell(r.pearson, r.pearson_low, r.pearson_high),
                corr_cell(r.spearman, r.spearman_low, r.spearman_high),
            ]
            for r in res.correlations.itertuples(index=False)
        ],
        ["influence vs (Table 2)", "pearson [95 % CI]", "spearman [95 % CI]"],
    )
    print()
    for r in res.horizons.itertuples(index=False):
        print(f"horizon: {r.message}")
    notes = _print_detection(out, cfg) if cfg.mislabel is not None else []
    warnings = res.warnings() + notes
    if warnings:
        print()
        for w in warnings:
            print(f"warning: {w}")
    return warnings


def _print_detection(out: Path, cfg: Any) -> list[str]:
    """Figure 6 as a table: share of corrupted labels found at each inspected fraction, AUC;
    returns the rankings' warnings (an unconverged solve, PBRFs still falling)."""
    from tasks.engine.plan import build_plan
    from tasks.reports.study_sections import METHOD_TITLES, read_detection_run

    found, auc = read_detection_run(out, build_plan(cfg.model_dump(mode="json")))
    fractions = sorted(set(found["inspected"]))
    rows = []
    for r in auc.itertuples(index=False):
        f = found[found["method"] == r.method].set_index("inspected")
        interval = r.method == "random"
        cells = [
            f"{f.loc[q, 'found']:.3f}"
            + (f" [{f.loc[q, 'low']:.3f}, {f.loc[q, 'high']:.3f}]" if interval else "")
            for q in fractions
        ]
        auc_cell = f"{r.auc:.3f}" + (f" [{r.low:.3f}, {r.high:.3f}]" if interval else "")
        rows.append([METHOD_TITLES[r.method], *cells, auc_cell])
    print()
    print_table(rows, ["mislabel (Figure 6)", *[f"found @{q:.0%}" for q in fractions], "AUC"])
    return [f"mislabel {r.method}: {r.note}" for r in auc.itertuples(index=False) if r.note]
