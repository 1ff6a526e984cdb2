"""How the grading table is shown: the report section (Markdown) and the ranking plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.engine.artifacts import atomic_path

REFERENCE_TITLES = {
    "pbrf": "PBRF",
    "pbrf_paper": "PBRF (paper setting)",
    "linearized_pbrf": "Linearized PBRF",
    "exact": "Exact solve (float64)",
    "cold": "Cold-Start (LOO)",
    "warm": "Warm-Start",
    "proximal": "Proximal",
}
RANKING_PLOT = "../grade/ranking.png"  # relative to report/report.md


def _f(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(float(x), spec)


def _cell(value: Any, low: Any, high: Any) -> str:
    return f"{_f(value, '.2f')} [{_f(low, '.2f')}, {_f(high, '.2f')}]"


def ordered(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Estimators by rank and references in table order."""
    ranks = table.drop_duplicates("estimator").sort_values("rank", kind="stable")
    order = list(REFERENCE_TITLES)
    refs = sorted(dict.fromkeys(table["reference"]), key=order.index)
    return list(ranks["estimator"]), refs


def grading_table(table: pd.DataFrame, method: str, *, cost: bool) -> str:
    """One row per estimator (by rank): ``method`` against every reference [95 % CI]."""
    names, refs = ordered(table)
    head = ["rank", "estimator", *[REFERENCE_TITLES.get(r, r) for r in refs]]
    if cost:
        head += ["wall s", "peak MB", "‖Δθ − Δθ_exact‖/‖Δθ_exact‖", "mislabel AUC", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = table.set_index(["estimator", "reference"])
    for name in names:
        first = table[table["estimator"] == name].iloc[0]
        cells = [str(int(first["rank"])), name + ("" if first["calibrated"] else " †")]
        for ref in refs:
            if (name, ref) not in by.index:
                cells.append("—")
                continue
            r = by.loc[(name, ref)]
            cells.append(_cell(r[method], r[f"{method}_low"], r[f"{method}_high"]))
        if cost:
            note = "failed: " + first["message"] if first["failed"] else first["message"]
            cells += [
                _f(first["wall_time_s"], ".2f"),
                _f(first["peak_memory_mb"], ".0f"),
                _f(first["response_rel_error"], ".3g"),
                _f(first["mislabel_auc"], ".3f"),
                _short((note or "").replace("|", "\\|")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grading_markdown(table: pd.DataFrame, rank_by: str) -> str:
    """The report's grading section."""
    n = int(table["n"].iloc[0]) if len(table) else 0
    load = table.drop_duplicates("estimator")["load_average"].dropna()
    load_text = f" (1-minute load average {load.min():.1f}–{load.max():.1f})" if len(load) else ""
    return "\n".join(
        [
            "## Grading influence estimators against the PBRF",
            "",
            f"Each estimator's predicted test-loss change (Eq. 23, ε = 1/N, the study's damping) "
            f"against each reference over the M = {n} removals: Spearman and Pearson "
            "correlation [95 % bootstrap interval]. Ranked by Spearman against "
            f"{REFERENCE_TITLES.get(rank_by, rank_by)}. Wall time and peak memory are those of "
            f"the estimator call alone{load_text}; † marks a ranking score without loss units "
            "(its Pearson is not a calibration).",
            "",
            "Spearman:",
            "",
            grading_table(table, "spearman", cost=True),
            "",
            "Pearson:",
            "",
            grading_table(table, "pearson", cost=False),
            "",
            f"![estimator ranking]({RANKING_PLOT})",
            "",
        ]
    )


def ranking_figure(table: pd.DataFrame, rank_by: str, title: str, path: Path) -> None:
    """Spearman against ``rank_by`` (bars, 95 % CI) and against the other references (markers)
    per estimator, best on top; wall time beside it (log scale)."""
    names, refs = ordered(table)
    by = table.set_index(["estimator", "reference"])
    fig = Figure(figsize=(10.0, 0.45 * len(names) + 1.8), layout="constrained")
    ax, ax_t = fig.subplots(1, 2, width_ratios=[3, 1], sharey=True)
    ys = list(range(len(names)))[::-1]
    main = [by.loc[(n, rank_by)] if (n, rank_by) in by.index else None for n in names]
    values = [_nan(r, "spearman") for r in main]
    lo = [v - _nan(r, "spearman_low") for v, r in zip(values, main, strict=True)]
    hi = [_nan(r, "spearman_high") - v for v, r in zip(values, main, strict=True)]
    ax.barh(ys, values, xerr=[_clean(lo), _clean(hi)], color="#4c72b0", alpha=0.8, capsize=3,
            label=f"{REFERENCE_TITLES.get(rank_by, rank_by)} (95 % CI)")  # fmt: skip
    markers = iter("osD^vP*X")
    others = [r for r in refs if r != rank_by]
    for k, ref in enumerate(others):
        xs = [_nan(by.loc[(n, ref)], "spearman") if (n, ref) in by.index else math.nan
              for n in names]  # fmt: skip
        dy = 0.5 * (k + 1) / (len(others) + 1) - 0.25  # spread markers within the bar
        ax.scatter(xs, [y + dy for y in ys], marker=next(markers, "o"), s=24, zorder=3,
                   label=REFERENCE_TITLES.get(ref, ref))  # fmt: skip
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(ys, names)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman correlation with the reference's test-loss change")
    ax.legend(loc="lower left", fontsize=7)
    walls = [float(table[table["estimator"] == n]["wall_time_s"].iloc[0]) for n in names]
    ax_t.barh(ys, [w if w and w > 0 else math.nan for w in walls], color="#55a868")
    ax_t.set_xscale("log")
    ax_t.set_xlabel("wall time (s)")
    fig.suptitle(f"{title}: influence estimators graded against the PBRF")
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nan(row: Any, key: str) -> float:
    if row is None:
        return math.nan
    v = row[key]
    return math.nan if v is None else float(v)


def _clean(xs: list[float]) -> list[float]:
    return [0.0 if math.isnan(x) else max(x, 0.0) for x in xs]
