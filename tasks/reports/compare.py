"""Cross-study summary: our Table 5, Table 2 and Figure 4 across finished runs, beside the paper's.

``write_comparison(runs, out)`` reads each finished run directory (its ``config.json`` and the
stamped aggregate tables, as :class:`tasks.reports.results.Results`), maps it to the paper's row
(:func:`tasks.reports.report.paper_row`) and writes into ``out``:

* ``comparison.md`` — Table 5 (gap mean ± std [95 % interval] beside the paper's mean ± std),
  Table 2 (Pearson / Spearman [95 % intervals] of influence against cold-start, warm-start and
  PBRF beside the paper's; Table 6 where Table 2 has no row) and the two qualitative findings per
  run, in the paper's row order;
* ``table5.csv`` and ``table2.csv`` — the same numbers in long form, one row per run × gap
  (run × reference), with the paper's values and their source table; ``findings.csv`` — the
  two findings per run;
* ``figure4.png`` — one panel per run: our five gaps with their intervals, the paper's means as
  markers (Figure 4 style).

The two findings (Section 6.1): the first three gaps dominate — their share of the sum of the
five gap means; and influence tracks the PBRF more than LOO — the PBRF Pearson and Spearman
correlations both above the cold-start ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.engine.artifacts import ArtifactError, atomic_path, write_text
from tasks.reports.paper import (
    MATCHED_LABEL,
    PAPER_SETTING_LABEL,
    gap_table,
    paper_gaps,
    paper_row,
    paper_table2,
    paper_values,
)
from tasks.reports.results import (
    GAP_TITLES,
    PAPER_PAIRS,
    PAPER_SETTING_GAPS,
    SOURCE_TITLES,
    TABLE2_REFERENCES,
    Results,
    fmt,
)

FIRST_THREE = ("warm_start", "proximity", "non_convergence")
DOMINANT_SHARE = 0.9  # the first three gaps "dominate": ≥ 90 % of the sum of the five means
NEGLIGIBLE = 0.01  # all five gaps together below 1 % of the output scale: nothing to split


@dataclass
class Run:
    """One finished run and the paper row it reproduces."""

    label: str  # the run directory's name
    path: Path
    results: Results
    paper_model: str
    paper_dataset: str  # "" when the paper has no such row
    note: str

    @property
    def cfg(self) -> Any:
        return self.results.cfg


def load_runs(paths: Sequence[Path | str]) -> tuple[list[Run], list[str]]:
    """The finished runs among ``paths`` (in the paper's row order) and one line per skipped
    path saying why."""
    from tasks.engine.runner import read_run_config

    runs: list[Run] = []
    skipped: list[str] = []
    for p in map(Path, paths):
        try:
            cfg = read_run_config(p)
            res = Results.read(p, cfg)
        except (OSError, ValueError, KeyError, ArtifactError) as exc:
            first = " ".join(str(exc).split())
            skipped.append(f"{p}: not a finished run ({first})")
            continue
        model, dataset, note = paper_row(cfg)
        has_row = bool(dataset and paper_gaps(model, dataset, gap_table(cfg)))
        runs.append(Run(p.name, p, res, model, dataset if has_row else "", note))
    names = [r.label for r in runs]
    for r in runs:  # the same directory name under two parents: label by path
        if names.count(r.label) > 1:
            r.label = str(r.path)
    order = _paper_order()
    runs.sort(key=lambda r: (order.get((r.paper_model, r.paper_dataset), len(order)), r.label))
    return runs, skipped


def _paper_order() -> dict[tuple[str, str], int]:
    df = paper_values()
    rows = df[df["table"] == "5"][["model", "dataset"]].drop_duplicates()
    return {(m, d): i for i, (m, d) in enumerate(rows.itertuples(index=False))}


# --------------------------------------------------------------------------- tables


def table5_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Long form: one row per run × gap, ours with the interval, the paper's mean and std.

    ``setting`` says which PBRF a gap runs through: ``paper`` (K/2 epochs at lr/10, the paper's
    like: its value stands beside), ``matched`` (this project's added rows, no paper value) or
    ``both`` (Warm-Start and Proximity, before any PBRF)."""
    rows = []
    paired = {v: k for k, v in PAPER_SETTING_GAPS.items()}
    for run in runs:
        table = gap_table(run.cfg)
        paper = paper_gaps(run.paper_model, run.paper_dataset, table) if run.paper_dataset else {}
        for g in run.results.gaps.itertuples(index=False):
            p = paper.get(paired.get(g.gap, ""), {})
            setting = (
                "both"
                if g.gap in GAP_TITLES and g.gap in paired
                else ("paper" if g.gap in paired else "matched")
            )
            rows.append(
                {
                    "run": run.label,
                    "experiment": run.cfg.name,
                    "model": run.cfg.model.name,
                    "dataset": run.cfg.data.name,
                    "paper_row": _row_name(run),
                    "gap": g.gap,
                    "setting": setting,
                    "mean": g.mean,
                    "std": g.std,
                    "ci_low": g.ci_low,
                    "ci_high": g.ci_high,
                    "n": g.n,
                    "paper_mean": p.get("mean", math.nan),
                    "paper_std": p.get("std", math.nan),
                    "paper_table": table if p else "",
                }
            )
    return pd.DataFrame(rows)


def table2_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Long form: one row per run × reference (cold, warm, PBRF), ours and the paper's."""
    rows = []
    for run in runs:
        curvature = run.cfg.influence.curvature
        table, paper = paper_table2(run.paper_model, run.paper_dataset, curvature)
        corr = {r.reference: r for r in run.results.correlations.itertuples(index=False)}
        for ref in TABLE2_REFERENCES:
            if ref not in corr:
                continue
            r, p = corr[ref], paper.get(PAPER_PAIRS.get(ref, ""), {})
            rows.append(
                {
                    "run": run.label,
                    "experiment": run.cfg.name,
                    "model": run.cfg.model.name,
                    "dataset": run.cfg.data.name,
                    "paper_row": _row_name(run),
                    "reference": ref,
                    "pearson": r.pearson,
                    "pearson_low": r.pearson_low,
                    "pearson_high": r.pearson_high,
                    "spearman": r.spearman,
                    "spearman_low": r.spearman_low,
                    "spearman_high": r.spearman_high,
                    "paper_table": table if p else "",
                    "paper_pearson": p.get("pearson", math.nan),
                    "paper_spearman": p.get("spearman", math.nan),
                }
            )
    return pd.DataFrame(rows)


def _row_name(run: Run) -> str:
    return f"{run.paper_model}/{run.paper_dataset}" if run.paper_dataset else ""


# --------------------------------------------------------------------------- findings


def first_three_share(means: dict[str, float], scale: float | None = None) -> float:
    """Share of the five gap means carried by the first three; NaN when the sum is 0, or below
    :data:`NEGLIGIBLE` of the output ``scale`` E‖f(θˢ, x)‖ when one is given."""
    total = sum(means.get(g, 0.0) for g in GAP_TITLES)
    floor = NEGLIGIBLE * scale if scale is not None and scale == scale else 0.0
    if not total > floor:
        return math.nan
    return sum(means.get(g, 0.0) for g in FIRST_THREE) / total


def findings(runs: Sequence[Run]) -> pd.DataFrame:
    """Per run: does each of the paper's two qualitative findings hold, ours and the paper's."""
    rows = []
    for run in runs:
        ours = {g.gap: float(g.mean) for g in run.results.gaps.itertuples(index=False)}
        like = {g: ours[p] for g, p in PAPER_SETTING_GAPS.items() if p in ours}
        matched = {g: ours[g] for g in GAP_TITLES if g in ours}
        table = gap_table(run.cfg)
        paper = paper_gaps(run.paper_model, run.paper_dataset, table) if run.paper_dataset else {}
        paper_means = {g: v["mean"] for g, v in paper.items() if "mean" in v}
        corr = {r.reference: r for r in run.results.correlations.itertuples(index=False)}
        _, pc = paper_table2(run.paper_model, run.paper_dataset, run.cfg.influence.curvature)
        scale = run.results.output_scale()
        rows.append(
            {
                "run": run.label,
                "paper_row": _row_name(run),
                # the paper's like: the gaps through the paper-setting PBRF
                "share": _share(like, scale),
                "paper_share": first_three_share(paper_means) if paper_means else math.nan,
                "pbrf_over_loo": _tracks_pbrf(corr.get("pbrf_paper"), corr.get("cold")),
                "paper_pbrf_over_loo": _paper_tracks(pc),
                # this project's added rows: through the horizon-matched PBRF
                "matched_share": _share(matched, scale),
                "matched_pbrf_over_loo": _tracks_pbrf(corr.get("pbrf"), corr.get("cold")),
            }
        )
    return pd.DataFrame(rows)


def _share(means: dict[str, float], scale: float) -> float:
    return first_three_share(means, scale) if len(means) == len(GAP_TITLES) else math.nan


def _tracks_pbrf(pbrf: Any, cold: Any) -> str:
    """'yes' when both PBRF correlations exceed the cold-start ones as printed (two decimals;
    'yes, disjoint' when the 95 % intervals do not overlap either), 'tie' when both are equal
    as printed, 'no' otherwise, 'n/a' when one is missing."""
    if pbrf is None or cold is None:
        return "n/a"
    pairs = [
        (round(float(pbrf.pearson), 2), round(float(cold.pearson), 2)),
        (round(float(pbrf.spearman), 2), round(float(cold.spearman), 2)),
    ]
    if any(math.isnan(a) or math.isnan(b) for a, b in pairs):
        return "n/a"
    if all(a == b for a, b in pairs):
        return "tie"
    if not all(a > b for a, b in pairs):
        return "no"
    disjoint = pbrf.pearson_low > cold.pearson_high and pbrf.spearman_low > cold.spearman_high
    return "yes, disjoint" if disjoint else "yes"


def _paper_tracks(pc: dict[str, dict[str, float]]) -> str:
    if "pbrf" not in pc or "cold" not in pc:
        return "n/a"
    p, c = pc["pbrf"], pc["cold"]
    return "yes" if p["pearson"] > c["pearson"] and p["spearman"] > c["spearman"] else "no"


def dominates(share: float) -> str:
    return "n/a" if math.isnan(share) else ("yes" if share >= DOMINANT_SHARE else "no")


# --------------------------------------------------------------------------- preset notes


def preset_notes(cfg: Any) -> tuple[str, tuple[str, ...]]:
    """(which scale of its preset this run is, the preset's notes): the choices where the paper
    is silent. The scale is the one whose config equals the run's, ignoring ``data.root`` and
    the ambient keys ``device`` and ``kernel`` (they change last bits, not what was run); ""
    when overrides changed anything else."""
    from pbrf.study.presets import PRESETS, load_preset

    preset = PRESETS.get(cfg.name)
    if preset is None:
        return "", ()
    same = {"data.root": cfg.data.root, "device": cfg.device, "kernel": cfg.kernel}
    for scale in preset.scale_names():
        if load_preset(cfg.name, same, None if scale == "default" else scale) == cfg:
            return scale, preset.notes
    return "", preset.notes


# --------------------------------------------------------------------------- markdown


def comparison_markdown(runs: Sequence[Run], skipped: Sequence[str] = ()) -> str:
    t5, t2, fin = table5_frame(runs), table2_frame(runs), findings(runs)
    gaps = list(GAP_TITLES)
    lines = [
        "# Cross-study comparison with the paper",
        "",
        f"{len(runs)} finished run(s). Ours: mean ± std over the removals [95 % bootstrap "
        "interval of the mean]; paper: mean ± std as printed. Each run is matched to the paper's "
        "row by its model and data set (stand-in data sets are noted).",
        "",
        "## Table 5: gaps (mean output distance on the training inputs)",
        "",
        "Per run, the gaps through the PBRF trained as the paper did (K/2 epochs at lr/10; the "
        "paper's Table 5 value beside each, Table 4 for full-Hessian runs), then through the "
        "horizon-matched PBRF (this project's added row, no paper value).",
        "",
        "| run | PBRF | model | data | paper row | " + " | ".join(GAP_TITLES.values()) + " |",
        "|---|---|---|---|---|" + "---|" * len(gaps),
    ]
    for run in runs:
        sub = t5[t5["run"] == run.label].set_index("gap")
        for label, names in ((PAPER_SETTING_LABEL, PAPER_SETTING_GAPS), (MATCHED_LABEL, None)):
            if names is not None and "non_convergence_paper" not in sub.index:
                continue
            cells = [_gap_cell(sub, names[g] if names else g, names is not None) for g in gaps]
            lines.append(
                f"| {run.label} | {label} | {run.cfg.model.name} | {run.cfg.data.name} | "
                f"{_row_name(run) or '—'} | " + " | ".join(cells) + " |"
            )
    notes = sorted({f"{r.cfg.data.name}: {r.note}" for r in runs if r.note})
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    lines += [
        "",
        "## Table 2: influence vs retraining, correlation of the test-loss change",
        "",
        "Pearson / Spearman over the removals [95 % intervals]; the paper's value from Table 2 "
        "(five MNIST models) or, where Table 2 has no row, Table 6 (the MLP rows; Table 7 for "
        "full-Hessian runs). The paper's PBRF column stands beside the paper-setting PBRF; "
        "the horizon-matched PBRF is this project's added column.",
        "",
        "| run | paper row | "
        + " | ".join(f"{SOURCE_TITLES[r]} P | {SOURCE_TITLES[r]} S" for r in TABLE2_REFERENCES)
        + " |",
        "|---|---|" + "---|---|" * len(TABLE2_REFERENCES),
    ]
    for run in runs:
        sub = t2[t2["run"] == run.label].set_index("reference")
        cells = []
        for ref in TABLE2_REFERENCES:
            if ref not in sub.index:
                cells += ["—", "—"]
                continue
            r = sub.loc[ref]
            for m in ("pearson", "spearman"):
                cell = f"{fmt(r[m], '.2f')} [{fmt(r[f'{m}_low'], '.2f')}, {fmt(r[f'{m}_high'], '.2f')}]"
                if r["paper_table"]:
                    cell += f"<br>paper {fmt(r[f'paper_{m}'], '.2f')} (T{r['paper_table']})"
                cells.append(cell)
        lines.append(f"| {run.label} | {_row_name(run) or '—'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## The paper's two findings, run by run",
        "",
        f"- *First three gaps dominate*: warm-start + proximity + non-convergence carry ≥ "
        f"{DOMINANT_SHARE:.0%} of the sum of the five gap means (n/a when the five together are "
        f"below {NEGLIGIBLE:.0%} of the output scale, or 0 in the paper: nothing to split).",
        "- *Influence tracks the PBRF more than LOO*: PBRF Pearson and Spearman both above "
        "cold-start's, as printed ('disjoint': the 95 % intervals do not overlap either; 'tie': "
        "equal, as with very few removals).",
        "",
        "Ours through the paper-setting PBRF (the paper's like), then through the "
        "horizon-matched PBRF (this project's addition).",
        "",
        "| run | paper row | first-three share (ours) | dominate? | paper share | paper | "
        "IF tracks PBRF > LOO (ours) | paper | matched PBRF: share | matched: IF tracks PBRF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fin.itertuples(index=False):
        lines.append(
            f"| {r.run} | {r.paper_row or '—'} | {fmt(r.share, '.1%')} | {dominates(r.share)} | "
            f"{fmt(r.paper_share, '.1%')} | {dominates(r.paper_share)} | {r.pbrf_over_loo} | "
            f"{r.paper_pbrf_over_loo} | {fmt(r.matched_share, '.1%')} | "
            f"{r.matched_pbrf_over_loo} |"
        )
    lines += _notes_markdown(runs)
    if skipped:
        lines += ["", "## Skipped", "", *[f"- {s}" for s in skipped]]
    lines += ["", "![Figure 4 across runs](figure4.png)", ""]
    return "\n".join(lines)


def _gap_cell(sub: pd.DataFrame, gap: str, with_paper: bool) -> str:
    if gap not in sub.index:
        return "—"
    r = sub.loc[gap]
    cell = f"{fmt(r['mean'])} ± {fmt(r['std'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
    if with_paper and not math.isnan(r["paper_mean"]):
        cell += f"<br>paper {fmt(r['paper_mean'])} ± {fmt(r['paper_std'])}"
    return cell


def _notes_markdown(runs: Sequence[Run]) -> list[str]:
    """Per preset: which of its scales each run is, and the choices the paper leaves open."""
    lines: list[str] = []
    seen: set[str] = set()
    for run in runs:
        scale, notes = preset_notes(run.cfg)
        if not notes:
            continue
        which = f"its `{scale}` scale" if scale else "the preset with overrides (config.json)"
        lines += ["", f"- **{run.label}** is {which}."]
        if run.cfg.name in seen:
            continue
        seen.add(run.cfg.name)
        lines += [f"  Preset `{run.cfg.name}` (notes on its `paper` scale):"]
        lines += [f"  - {n}" for n in notes]
    if not lines:
        return []
    return ["", "## Settings the paper leaves open, per preset", *lines]


# --------------------------------------------------------------------------- figure


def comparison_figure(runs: Sequence[Run], path: Path) -> None:
    """Figure 4 across runs: per run our five gaps with 95 % intervals (through the paper-setting
    PBRF where the run trained it), the paper's as markers."""
    t5 = table5_frame(runs)
    cols = min(4, max(1, len(runs)))
    nrows = max(1, math.ceil(len(runs) / cols))
    fig = Figure(figsize=(3.6 * cols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).flatten()
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    labels = ["WS", "Prox", "NC", "Lin", "Solv"]
    for ax, run in zip(axes, runs, strict=False):
        sub = t5[t5["run"] == run.label].set_index("gap")
        like = "non_convergence_paper" in sub.index  # the paper's like: paper-setting PBRF
        sub = sub.reindex([PAPER_SETTING_GAPS[g] if like else g for g in GAP_TITLES])
        x = list(range(len(GAP_TITLES)))
        mean = sub["mean"].to_numpy()
        err = [mean - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - mean]
        ax.bar(x, mean, yerr=err, capsize=3, color=colors, label="ours (95 % CI)")
        if sub["paper_mean"].notna().any():
            ax.plot(x, sub["paper_mean"].to_numpy(), "kD", ms=5, label="paper")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(
            f"{run.label}" + (f"\n({_row_name(run)})" if run.paper_dataset else ""), fontsize=9
        )
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    if runs:
        axes[0].legend(fontsize=7)
    fig.suptitle("Decomposition across runs, ours vs the paper (Figure 4 style)")
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})


# --------------------------------------------------------------------------- entry point


def write_comparison(paths: Sequence[Path | str], out: Path | str) -> dict[str, Any]:
    """Write ``comparison.md``, ``table5.csv``, ``table2.csv`` and ``figure4.png`` into ``out``
    for the finished runs among ``paths``; returns the runs, the skipped paths and the files."""
    runs, skipped = load_runs(paths)
    if not runs:
        raise FileNotFoundError(
            "no finished run among " + ", ".join(map(str, paths)) + ": " + "; ".join(skipped)
        )
    out = Path(out)
    files = {
        "markdown": out / "comparison.md",
        "table5": out / "table5.csv",
        "table2": out / "table2.csv",
        "figure4": out / "figure4.png",
        "findings": out / "findings.csv",
    }
    _csv(table5_frame(runs), files["table5"])
    _csv(table2_frame(runs), files["table2"])
    fin = findings(runs)
    fin.insert(3, "dominates", fin["share"].map(dominates))
    fin.insert(5, "paper_dominates", fin["paper_share"].map(dominates))
    _csv(fin, files["findings"])
    comparison_figure(runs, files["figure4"])
    write_text(files["markdown"], comparison_markdown(runs, skipped))
    return {"runs": runs, "skipped": skipped, "files": files}


def _csv(df: pd.DataFrame, path: Path) -> None:
    write_text(
        path, df.to_csv(index=False, float_format=lambda v: repr(float(v)), lineterminator="\n")
    )
