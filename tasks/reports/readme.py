"""README result blocks: written from a finished run, and checked against a fresh one.

A block sits between ``<!-- results:NAME:start -->`` and ``<!-- results:NAME:end -->`` in a
Markdown file. :func:`render` writes Table 5 and Table 2 of a run with their 95 % intervals;
:func:`check` compares a fresh run's estimates with the numbers a block states: each estimate
must fall inside the block's interval for it (widened by the block's display rounding), so the
README can only claim what a run of the committed code reproduces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pbrf.stats import Interval, bootstrap_correlation_difference
from tasks.reports.paper import gap_table, paper_gaps, paper_row, paper_table2
from tasks.reports.results import (
    ALL_GAP_TITLES,
    GAP_TITLES,
    PAPER_PAIRS,
    PAPER_SETTING_GAPS,
    SOURCE_TITLES,
    Results,
    corr_cell,
    fmt,
    gap_cell,
)

GAP_DIGITS, CORR_DIGITS = 3, 2
DIFF_ROW = "Spearman(IF, PBRF) − Spearman(IF, LOO)"
_NUM = r"(-?\d+\.\d+|n/a)"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"


@dataclass(frozen=True)
class RunFacts:
    """What a block says about how its run was made: the preset scale, the data, compute time."""

    scale: str  # "" when overrides changed the preset's config
    data: str
    seconds: float  # summed over the run's steps (their manifests)


def _pbrf_of(sources: Any) -> str | None:
    """The PBRF a finding uses: the paper-setting one, else the matched one (None: neither)."""
    return next((v for v in ("pbrf_paper", "pbrf") if v in sources), None)


def spearman_difference(res: Results) -> Interval | None:
    """Spearman(influence, paper-setting PBRF) − Spearman(influence, LOO) with its interval
    (the paper's second finding); the matched PBRF when the run has no paper-setting one."""
    wide = res.wide_changes()
    pbrf = _pbrf_of(wide.columns)
    if pbrf is None or "cold" not in wide.columns:
        return None
    return bootstrap_correlation_difference(
        *(wide[c].to_numpy(dtype="float64", copy=True) for c in ("influence", pbrf, "cold"))
    )


def render(res: Results, name: str, facts: RunFacts | None = None) -> str:
    """The block for run ``res`` (markers included): Table 5 through the paper-setting PBRF
    beside the paper's row (Table 4 for full-Hessian runs) and through the matched PBRF
    (this project's added rows), Table 2 beside the paper's, and the two findings."""
    cfg = res.cfg
    start, end = _markers(name)
    gaps = {r.gap: r for r in res.gaps.itertuples(index=False)}
    model, dataset, note = paper_row(cfg)
    table = gap_table(cfg)
    paper = paper_gaps(model, dataset, table) if dataset else {}
    corr_table, paper_corr = paper_table2(model, dataset, cfg.influence.curvature)
    lines = [start]
    if facts is not None:
        scale = f"`{facts.scale}` scale" if facts.scale else "preset with overrides"
        lines += [
            f"`{cfg.name}`, {scale}: {cfg.model.name} on {facts.data}"
            + (f" ({note})" if note else "")
            + f"; compute time {_duration(facts.seconds)} (sum of the run's steps).",
            "",
        ]
    lines += [
        f"Table {table} — {cfg.model.name} on {cfg.data.name}, M = {cfg.select.num_removals}: "
        "mean ± std [95 % interval of the mean] of E‖f(θ_a, x) − f(θ_b, x)‖ over the training "
        f"inputs (outputs' own scale E‖f(θˢ, x)‖ = {fmt(res.output_scale())}).",
        "",
        "| gap | mean ± std [95 % CI] |" + (f" paper (Table {table}) |" if paper else ""),
        "|---|---|" + ("---|" if paper else ""),
    ]
    for g in GAP_TITLES:  # the chain the paper measured: through the paper-setting PBRF
        like = PAPER_SETTING_GAPS[g]
        if like in gaps:
            lines.append(_gap_row(gaps[like], paper.get(g), bool(paper)))
    for g in GAP_TITLES:  # then this project's added rows: through the matched PBRF
        if PAPER_SETTING_GAPS[g] != g and g in gaps:
            lines.append(_gap_row(gaps[g], None, bool(paper), added=bool(paper)))
    lines += [
        "",
        "Table 2 — influence prediction vs actual test-loss change, over the removals "
        "(95 % bootstrap intervals):",
        "",
        "| influence vs | Pearson [95 % CI] | Spearman [95 % CI] |"
        + (f" paper P / S (Table {corr_table}) |" if paper_corr else ""),
        "|---|---|---|" + ("---|" if paper_corr else ""),
    ]
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    for ref in SOURCE_TITLES:
        if ref in corr:
            r = corr[ref]
            row = (
                f"| {SOURCE_TITLES[ref]} | {corr_cell(r.pearson, r.pearson_low, r.pearson_high)} "
                f"| {corr_cell(r.spearman, r.spearman_low, r.spearman_high)} |"
            )
            if paper_corr:
                p = paper_corr.get(PAPER_PAIRS.get(ref, ""), {})
                row += (
                    f" {fmt(p.get('pearson'), '.2f')} / {fmt(p.get('spearman'), '.2f')} |"
                    if p
                    else (" this project's |" if ref == "pbrf" else " — |")
                )
            lines.append(row)
    if facts is not None:
        lines += ["", *_findings(res)]
    lines.append(end)
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _gap_row(r: Any, paper: dict | None, paper_col: bool, added: bool = False) -> str:
    row = f"| {ALL_GAP_TITLES.get(r.gap, r.gap)} | {gap_cell(r)} |"
    if not paper_col:
        return row
    if added:
        return row + " this project's (matched PBRF) |"
    return row + (f" {fmt(paper.get('mean'))} ± {fmt(paper.get('std'))} |" if paper else " — |")


@dataclass(frozen=True)
class Findings:
    """The paper's two findings for one run, ours beside the paper's."""

    share: float  # the first three gaps' share of the five (nan without all five)
    matched: bool  # the share is of the matched-PBRF chain (no paper-setting linearized PBRF)
    paper_share: float
    difference: Interval | None  # Spearman(IF, PBRF) − Spearman(IF, LOO)
    paper_difference: str  # formatted, "—" when the paper has no such pair


def findings(res: Results) -> Findings:
    from tasks.reports.compare import first_three_share

    model, dataset, _ = paper_row(res.cfg)
    paper = paper_gaps(model, dataset, gap_table(res.cfg)) if dataset else {}
    paper_corr = paper_table2(model, dataset, res.cfg.influence.curvature)[1]
    means = {r.gap: float(r.mean) for r in res.gaps.itertuples(index=False)}
    like = {g: means[p] for g, p in PAPER_SETTING_GAPS.items() if p in means}
    matched = len(like) < 5  # no paper-setting linearized PBRF: the matched chain instead
    if matched:
        like = {g: means[g] for g in GAP_TITLES if g in means}
    share = first_three_share(like, res.output_scale()) if len(like) == 5 else float("nan")
    paper_means = {g: v["mean"] for g, v in paper.items() if "mean" in v}
    paper_share = first_three_share(paper_means) if paper_means else float("nan")
    p = paper_corr.get("pbrf", {}).get("spearman"), paper_corr.get("cold", {}).get("spearman")
    paper_diff = fmt(p[0] - p[1], ".2f") if None not in p else "—"
    return Findings(share, matched, paper_share, spearman_difference(res), paper_diff)


def _findings(res: Results) -> list[str]:
    """The paper's two findings, ours (paper-setting PBRF) beside the paper's."""
    f = findings(res)
    lines = [
        "| finding | ours [95 % CI] | paper |",
        "|---|---|---|",
        f"| share of the first three gaps{' (matched PBRF)' if f.matched else ''} "
        f"| {fmt(f.share, '.1%')} | {fmt(f.paper_share, '.1%')} |",
    ]
    iv = f.difference
    if iv is not None:
        lines.append(
            f"| {DIFF_ROW} | {corr_cell(iv.estimate, iv.low, iv.high)} | {f.paper_difference} |"
        )
    return lines


SUMMARY = "summary"


def summary_row(res: Results, facts: RunFacts) -> str:
    """One run's line of the reproduction summary (:func:`render_summary`)."""
    cfg, f = res.cfg, findings(res)
    corr = {r.reference: r for r in res.correlations.itertuples(index=False)}
    pbrf = _pbrf_of(corr)

    def spearman(ref: str | None) -> str:
        r = corr.get(ref) if ref else None
        return "n/a" if r is None else corr_cell(r.spearman, r.spearman_low, r.spearman_high)

    iv = f.difference
    diff = "n/a" if iv is None else corr_cell(iv.estimate, iv.low, iv.high)
    scale = facts.scale or "overrides"
    return (
        f"| `{cfg.name}` | {scale}; {cfg.data.name}, N = {cfg.data.sizes().train}, "
        f"M = {cfg.select.num_removals} | {fmt(f.share, '.1%')}{' (matched)' if f.matched else ''}"
        f" / {fmt(f.paper_share, '.1%')} | {spearman('cold')} | {spearman(pbrf)} | "
        f"{diff} / {f.paper_difference} | {_duration(facts.seconds)} |"
    )


CPU_MODELS = ("mlp", "logistic_regression")  # a tabular row of these fits a CPU (concrete-mlp)


def pending_rows(measured: dict[str, str | None]) -> list[str]:
    """One line per row of Tables 5 and 2 not measured at the paper's settings (``measured``:
    preset → the scale it ran at), with what it needs and the one command that runs it."""
    from pbrf.study.presets import PRESETS, load_preset

    lines = []
    for name, preset in PRESETS.items():
        if preset.paper_row is None or "paper" not in preset.scales:
            continue  # stand-ins and appendix studies are not table rows
        scale = measured.get(name, "")
        if name in measured and not preset.scales.get(scale or "default"):
            continue  # measured with the paper's settings
        cfg = load_preset(name, scale="paper")
        tabular = cfg.model.name in CPU_MODELS and len(cfg.data.signature().input_shape) == 1
        needs = "its data files" if tabular else "a GPU and the full data set"
        device = "" if tabular else " --device cuda"
        done = f"; measured here at the `{scale}` scale" if name in measured else ""
        model, dataset = preset.paper_row
        lines.append(
            f"- `{name}` ({model} on {dataset}{done}): needs {needs}: "
            f"`pbrf data fetch {cfg.data.name} && pbrf run {name}{device}`"
        )
    return lines


def render_summary(rows: Sequence[str], pending: Sequence[str] = ()) -> str:
    """The reproduction summary: one line per measured row, then the rows not measured at the
    paper's settings with their commands (markers included)."""
    start, end = _markers(SUMMARY)
    rest = ["", "Not measured here at the paper's settings:", "", *pending] if pending else []
    return "\n".join(
        [
            start,
            "| row | scale; data, N, M | first three gaps' share: ours / paper "
            "| Spearman(IF, LOO) [95 % CI] | Spearman(IF, PBRF paper setting) [95 % CI] "
            "| difference: ours [95 % CI] / paper | compute |",
            "|---|---|---|---|---|---|---|",
            *rows,
            *rest,
            end,
        ]
    )


def _numbers(row: str) -> str:
    """A summary line without its last cell (the compute time)."""
    return row.rstrip(" |").rsplit(" | ", 1)[0]


def check_summary(text: str, rows: Sequence[str], pending: Sequence[str] = ()) -> list[str]:
    """Where the summary block differs from the rows the runs give (it states no number of its
    own: each is a reading of a run's tables, so they must match exactly; the last cell, the
    compute time, is not compared: it differs between runs of the same code), and from the
    list of rows still to measure (exactly)."""
    start, end = _markers(SUMMARY)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0:
        raise ValueError(f"no block {start} … {end} in the file")
    stated = {
        line.split(" | ")[0]: line for line in text[i:j].splitlines() if line.startswith("| `")
    }
    problems = []
    listed = [line for line in text[i:j].splitlines() if line.startswith("- `")]
    if listed != list(pending):
        problems.append(
            "summary: the rows not measured should read\n  " + "\n  ".join(pending or ["(none)"])
        )
    for row in rows:
        key = row.split(" | ")[0]
        if key not in stated:
            problems.append(f"summary: no line for {key.strip('| ')}")
        elif _numbers(stated[key]) != _numbers(row):
            problems.append(
                f"summary: {key.strip('| ')} states\n  {stated[key]}\nthe run gives\n  {row}"
            )
    return problems


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
    # a row's first cells carry the claim; cells after them (the paper's values) are not ours
    gap_re = re.compile(rf"^\| (.+?) \| {_NUM} ± {_NUM} \[{_NUM}, {_NUM}\] \|")
    corr_re = re.compile(rf"^\| (.+?) \| {_NUM} \[{_NUM}, {_NUM}\] \| {_NUM} \[{_NUM}, {_NUM}\] \|")
    one_re = re.compile(rf"^\| ({re.escape(DIFF_ROW)}) \| {_NUM} \[{_NUM}, {_NUM}\] \|")
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
        elif m := one_re.match(line):
            row, v, lo, hi = m.groups()
            if "n/a" not in (v, lo, hi):
                out.append(Claim(row, "difference", float(v), float(lo), float(hi), 0.01))
    return out


def check(text: str, name: str, res: Results) -> list[str]:
    """Where a fresh run ``res`` falls outside the block's stated intervals (empty: all inside)."""
    fresh: dict[tuple[str, str], float] = {}
    for r in res.gaps.itertuples(index=False):
        fresh[(ALL_GAP_TITLES.get(r.gap, r.gap), "mean")] = float(r.mean)
    for r in res.correlations.itertuples(index=False):
        title = SOURCE_TITLES.get(r.reference, r.reference)
        fresh[(title, "pearson")] = float(r.pearson)
        fresh[(title, "spearman")] = float(r.spearman)
    if (iv := spearman_difference(res)) is not None:
        fresh[(DIFF_ROW, "difference")] = float(iv.estimate)
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
