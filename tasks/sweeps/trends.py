"""Does a sweep show the trend the paper reports? One verdict per expectation.

For ``increases``/``decreases`` the verdict combines two facts about the term's estimate
against the swept value (ordered by x):

* the direction: the sign of the Spearman rank correlation ρ between x and the estimate over
  the points (monotone association, insensitive to the axis scale);
* the size: whether the term at the largest x is above (below) the one at the smallest x by
  more than the removal-to-removal uncertainty. When both ends measured the same removal sets
  (same ``select`` node: every sweep but the fraction sweep) and per-removal gaps are given,
  this is paired — the 95 % BCa interval of the mean per-removal difference excludes 0 —
  otherwise the two ends' own 95 % intervals must not overlap.

``appears``: right direction and a change beyond the uncertainty; ``unresolved``: right
direction within it; ``opposite``: wrong direction and separated ends; ``absent``: anything else. For
``peaks`` (``dips``) the verdict names the x of the largest (smallest) estimate and whether it
lies inside the grid with both ends below (above) its interval. Fewer than three points give
no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pbrf.stats import Interval, bootstrap_mean, correlation
from pbrf.study.sweeps import Expectation, SweepSpec
from tasks.reports.results import GAP_TITLES, SOURCE_TITLES, fmt

MIN_POINTS = 3
RESAMPLES, LEVEL = 2000, 0.95  # as every interval of a run (tasks.steps.aggregate)


@dataclass(frozen=True)
class TrendVerdict:
    term: str
    trend: str
    source: str
    group: str  # "" or the second axis' value
    outcome: str  # appears | unresolved | opposite | absent | interior/edge peak/dip | too few
    rho: float | None
    text: str


def term_title(term: str) -> str:
    if term.startswith(("spearman:", "pearson:")):
        method, ref = term.split(":", 1)
        return f"{method.capitalize()} of influence vs {SOURCE_TITLES.get(ref, ref)}"
    return f"{GAP_TITLES.get(term, term)} gap"


def _rows(table: pd.DataFrame, x: pd.Series, term: str) -> pd.DataFrame:
    if ":" in term:
        quantity, name = term.split(":", 1)
    else:
        quantity, name = "gap", term
    mask = (table["quantity"] == quantity) & (table["term"] == name)
    rows = table[mask].assign(x=x[mask])
    rows = rows[np.isfinite(rows["x"].astype(float)) & np.isfinite(rows["estimate"].astype(float))]
    return rows.sort_values("x")


def _cell(r: pd.Series) -> str:
    return f"{fmt(r['x'], '.3g')}: {fmt(r['estimate'], '.3g')} [{fmt(r['low'], '.3g')}, {fmt(r['high'], '.3g')}]"


def paired_difference(
    per_removal: pd.DataFrame | None, term: str, first: str, last: str
) -> Interval | None:
    """Mean over removals of ``term(last) − term(first)`` with its BCa interval, when both
    points measured the same removal sets (``per_removal``: point, term, removal_id,
    distance, removals — the key of the removal sets)."""
    if per_removal is None or ":" in term:
        return None
    a = per_removal[(per_removal["point"] == first) & (per_removal["term"] == term)]
    b = per_removal[(per_removal["point"] == last) & (per_removal["term"] == term)]
    if a.empty or set(a["removals"]) != set(b["removals"]) or len(set(a["removals"])) != 1:
        return None
    a, b = a.sort_values("removal_id"), b.sort_values("removal_id")
    if list(a["removal_id"]) != list(b["removal_id"]):
        return None
    diff = np.array(b["distance"], dtype=float) - np.array(a["distance"], dtype=float)
    return bootstrap_mean(diff, resamples=RESAMPLES, level=LEVEL, seed=0)


def _monotone(
    e: Expectation, rows: pd.DataFrame, per_removal: pd.DataFrame | None
) -> tuple[str, float, str]:
    rho = correlation(
        np.array(rows["x"], dtype=float), np.array(rows["estimate"], dtype=float), method="spearman"
    )
    first, last = rows.iloc[0], rows.iloc[-1]
    paired = paired_difference(per_removal, e.term, first.get("point"), last.get("point"))
    if paired is not None:
        up, down = paired.low > 0, paired.high < 0
        how = (
            f"paired over the {paired.n} shared removals, last − first = "
            f"{fmt(paired.estimate, '.3g')} [{fmt(paired.low, '.3g')}, {fmt(paired.high, '.3g')}]"
        )
    else:
        up = last["low"] > first["high"]
        down = last["high"] < first["low"]
        how = "unpaired: the ends' intervals compared"
    sign = 1 if e.trend == "increases" else -1
    right = not math.isnan(rho) and sign * rho > 0
    separated_right = up if sign > 0 else down
    separated_wrong = down if sign > 0 else up
    if right and separated_right:
        return "appears", rho, how
    if right:
        return "unresolved", rho, how
    if separated_wrong:
        return "opposite", rho, how
    return "absent", rho, how


def _extremum(rows: pd.DataFrame, trend: str) -> tuple[str, pd.Series]:
    """``peaks``: the largest estimate; ``dips``: the smallest. Interior, with both ends beyond
    its interval (below a peak's lower end, above a dip's upper end), or not."""
    est = rows["estimate"].to_numpy(float)
    i = int(np.argmax(est) if trend == "peaks" else np.argmin(est))
    top = rows.iloc[i]
    ends = [rows.iloc[j]["estimate"] for j in (0, len(rows) - 1) if j != i]
    beyond = (
        all(v < top["low"] for v in ends)
        if trend == "peaks"
        else all(v > top["high"] for v in ends)
    )
    kind = "peak" if trend == "peaks" else "dip"
    if not 0 < i < len(rows) - 1:
        return f"edge {kind}", top
    return (f"interior {kind}" if beyond else f"interior {kind} within the uncertainty"), top


def trend_verdicts(
    spec: SweepSpec,
    table: pd.DataFrame,
    x: pd.Series,
    per_removal: pd.DataFrame | None = None,
) -> list[TrendVerdict]:
    """One verdict per expectation of ``spec`` (per value of a second axis, if any);
    ``per_removal`` (see :func:`paired_difference`) makes gap comparisons paired."""
    out: list[TrendVerdict] = []
    xname = "η·S/(T/σ)" if spec.x == "horizon_ratio" else spec.keys[0]
    groups = (
        [("", table.index)]
        if len(spec.keys) == 1
        else [
            (f"{spec.keys[1]}={fmt(v, 'g')}", g.index)
            for v, g in table.groupby("value2", sort=False)
        ]
    )
    for e in spec.expectations:
        for label, idx in groups:
            rows = _rows(table.loc[idx], x.loc[idx], e.term)
            where = f" ({label})" if label else ""
            head = f"{term_title(e.term)} {e.trend} with {xname}{where} [{e.source}]"
            if len(rows) < MIN_POINTS:
                out.append(
                    TrendVerdict(
                        e.term,
                        e.trend,
                        e.source,
                        label,
                        "too few",
                        None,
                        f"{head}: fewer than {MIN_POINTS} points, no verdict",
                    )
                )
                continue
            if e.trend in ("peaks", "dips"):
                outcome, top = _extremum(rows, e.trend)
                text = (
                    f"{head}: **{outcome}** at {xname} = {fmt(top['x'], '.3g')} "
                    f"({fmt(top['estimate'], '.3g')} [{fmt(top['low'], '.3g')}, "
                    f"{fmt(top['high'], '.3g')}]); ends {_cell(rows.iloc[0])} and "
                    f"{_cell(rows.iloc[-1])}"
                )
                out.append(TrendVerdict(e.term, e.trend, e.source, label, outcome, None, text))
                continue
            outcome, rho, how = _monotone(e, rows, per_removal)
            text = (
                f"{head}: **{outcome}** — Spearman ρ(x, estimate) = {fmt(rho, '.2f')} over "
                f"{len(rows)} points; {_cell(rows.iloc[0])} → {_cell(rows.iloc[-1])}; {how}"
            )
            out.append(TrendVerdict(e.term, e.trend, e.source, label, outcome, rho, text))
    return out
