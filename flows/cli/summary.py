"""The results summary ``pbrf run`` and ``pbrf report`` print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.cli.table import print_table


def print_results(out: Path, cfg: Any) -> list[str]:
    """Print Table 5, Table 2 (with intervals), horizons and warnings; return the warnings."""
    from tasks.results import GAP_TITLES, SOURCE_TITLES, Results, corr_cell, fmt

    res = Results.read(out, cfg)
    print()
    print_table(
        [
            [
                GAP_TITLES[r.gap],
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
    warnings = res.warnings()
    if warnings:
        print()
        for w in warnings:
            print(f"warning: {w}")
    return warnings
