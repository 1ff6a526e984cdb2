"""README result blocks: written from a finished run, and checked against a fresh one.

A block sits between ``<!-- results:NAME:start -->`` and ``<!-- results:NAME:end -->`` in a
Markdown file. :func:`render` writes Table 5 and Table 2 of a run with their 95 % intervals;
:func:`check` compares a fresh run's estimates with the numbers a block states: each estimate
must fall inside the block's interval for it (widened by the block's display rounding), so the
README can only claim what a run of the committed code reproduces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.reports.results import GAP_TITLES, SOURCE_TITLES, Results, corr_cell, fmt, gap_cell

GAP_DIGITS, CORR_DIGITS = 3, 2
_NUM = r"(-?\d+\.\d+|n/a)"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"


def render(res: Results, name: str) -> str:
    """The block for run ``res`` (markers included)."""
    cfg = res.cfg
    start, end = _markers(name)
    gaps = {r.gap: r for r in res.gaps.itertuples(index=False)}
    lines = [
        start,
        f"Table 5 — {cfg.model.name} on {cfg.data.name}, M = {cfg.select.num_removals}: mean ± std "
        "[95 % interval of the mean] of E‖f(θ_a, x) − f(θ_b, x)‖ over the training inputs "
        f"(outputs' own scale E‖f(θˢ, x)‖ = {fmt(res.output_scale())}).",
        "",
        "| gap | mean ± std [95 % CI] |",
        "|---|---|",
        *[f"| {GAP_TITLES[g]} | {gap_cell(gaps[g])} |" for g in GAP_TITLES if g in gaps],
        "",
        "Table 2 — influence prediction vs actual test-loss change, over the removals "
        "(95 % bootstrap intervals):",
        "",
        "| influence vs | Pearson [95 % CI] | Spearman [95 % CI] |",
        "|---|---|---|",
    ]
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    for ref in SOURCE_TITLES:
        if ref in corr:
            r = corr[ref]
            lines.append(
                f"| {SOURCE_TITLES[ref]} | {corr_cell(r.pearson, r.pearson_low, r.pearson_high)} "
                f"| {corr_cell(r.spearman, r.spearman_low, r.spearman_high)} |"
            )
    lines.append(end)
    return "\n".join(lines)


def replace(text: str, name: str, block: str) -> str:
    """``text`` with block ``name`` replaced by ``block`` (which carries its own markers)."""
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0:
        raise ValueError(f"no block {start} … {end} in the file")
    return text[:i] + block + text[j + len(end) :]


@dataclass(frozen=True)
class Claim:
    row: str
    what: str  # "mean", "pearson", "spearman"
    value: float
    low: float
    high: float
    unit: float  # display rounding of the numbers


def claims(text: str, name: str) -> list[Claim]:
    """The numbers block ``name`` of ``text`` states, with their intervals."""
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0:
        raise ValueError(f"no block {start} … {end} in the file")
    out: list[Claim] = []
    gap_re = re.compile(rf"^\| (.+?) \| {_NUM} ± {_NUM} \[{_NUM}, {_NUM}\] \|$")
    corr_re = re.compile(
        rf"^\| (.+?) \| {_NUM} \[{_NUM}, {_NUM}\] \| {_NUM} \[{_NUM}, {_NUM}\] \|$"
    )
    for line in text[i:j].splitlines():
        if m := gap_re.match(line):
            row, mean, _, lo, hi = m.groups()
            if "n/a" not in (mean, lo, hi):
                out.append(Claim(row, "mean", float(mean), float(lo), float(hi), 10**-GAP_DIGITS))
        elif m := corr_re.match(line):
            row, p, plo, phi, s, slo, shi = m.groups()
            for what, v, lo, hi in (("pearson", p, plo, phi), ("spearman", s, slo, shi)):
                if "n/a" not in (v, lo, hi):
                    unit = 10**-CORR_DIGITS
                    out.append(Claim(row, what, float(v), float(lo), float(hi), unit))
    return out


def check(text: str, name: str, res: Results) -> list[str]:
    """Where a fresh run ``res`` falls outside the block's stated intervals (empty: all inside)."""
    fresh: dict[tuple[str, str], float] = {}
    for r in res.gaps.itertuples(index=False):
        fresh[(GAP_TITLES[r.gap], "mean")] = float(r.mean)
    for r in res.correlations.itertuples(index=False):
        title = SOURCE_TITLES.get(r.reference, r.reference)
        fresh[(title, "pearson")] = float(r.pearson)
        fresh[(title, "spearman")] = float(r.spearman)
    stated = claims(text, name)
    if not stated:
        return [f"block {name!r} states no numbers"]
    problems = []
    for c in stated:
        key = (c.row, c.what)
        if key not in fresh:
            problems.append(f"{c.row} {c.what}: the run has no such number")
            continue
        v = fresh[key]
        if not (c.low - c.unit <= v <= c.high + c.unit):
            problems.append(
                f"{c.row} {c.what}: the run gives {v:.4g}, outside the stated "
                f"[{c.low}, {c.high}] (README says {c.value})"
            )
    return problems
