"""The Figure-5 style plot of a sweep: each term of the decomposition against the swept value.

One panel per gap (mean with its 95 % bootstrap interval; a log y axis when every interval is
positive, as gaps span decades) and one panel with the Spearman correlations of influence with
LOO retraining, the PBRF and the linearized PBRF. The x axis is logarithmic for logarithmic
grids (width, epochs, weight decay, damping, the horizon ratio) and linear otherwise (depth,
fraction). A second swept key draws one line per value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pbrf.study.sweeps import SweepSpec
from tasks.engine.artifacts import atomic_path
from tasks.reports.results import GAP_TITLES, SOURCE_TITLES, fmt

CORRELATIONS = ("cold", "pbrf", "linearized_pbrf")


def _series(rows: pd.DataFrame, x: pd.Series):
    rows = rows.assign(x=x[rows.index].astype(float)).sort_values("x")
    rows = rows[np.isfinite(rows["x"]) & np.isfinite(rows["estimate"].astype(float))]
    xs = rows["x"].to_numpy(float)
    est = rows["estimate"].to_numpy(float)
    lo = np.nan_to_num(rows["low"].to_numpy(float), nan=0.0)
    hi = np.nan_to_num(rows["high"].to_numpy(float), nan=0.0)
    return xs, est, np.clip(est - lo, 0, None), np.clip(hi - est, 0, None), lo


def _groups(spec: SweepSpec, table: pd.DataFrame):
    if len(spec.keys) == 1:
        return [("", table)]
    return [(f"{spec.keys[1]}={fmt(v, 'g')}", g) for v, g in table.groupby("value2", sort=False)]


def sweep_figure(spec: SweepSpec, table: pd.DataFrame, x: pd.Series, path: Path) -> None:
    gaps = [g for g in GAP_TITLES if g in set(table.loc[table["quantity"] == "gap", "term"])]
    have = list(dict.fromkeys(table.loc[table["quantity"] == "spearman", "term"]))
    refs = [r for r in CORRELATIONS if r in have] or have[:2]
    panels = [*gaps, *(["correlation"] if refs else [])]
    fig = Figure(figsize=(3.2 * max(1, len(panels)), 3.4), layout="constrained")
    if not panels:  # no point finished
        fig.text(0.5, 0.5, f"{spec.name}: no finished points", ha="center", va="center")
        _save(fig, path)
        return
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    log_x = spec.x == "horizon_ratio" or spec.axes[0].log
    xlabel = "η·S / (T/σ)" if spec.x == "horizon_ratio" else spec.keys[0]
    for ax, panel in zip(axes, panels, strict=True):
        positive = True
        for label, group in _groups(spec, table):
            if panel == "correlation":
                for ref in refs:
                    rows = group[(group["quantity"] == "spearman") & (group["term"] == ref)]
                    xs, est, el, eh, _ = _series(rows, x)
                    name = SOURCE_TITLES.get(ref, ref) + (f", {label}" if label else "")
                    ax.errorbar(xs, est, yerr=[el, eh], marker="o", ms=3, capsize=3, label=name)
                ax.set_title("Spearman: influence vs")
                ax.axhline(0.0, color="grey", lw=0.6)
                ax.set_ylim(-1.05, 1.05)
            else:
                rows = group[(group["quantity"] == "gap") & (group["term"] == panel)]
                xs, est, el, eh, lo = _series(rows, x)
                positive = positive and bool(len(lo)) and bool((lo > 0).all())
                ax.errorbar(xs, est, yerr=[el, eh], marker="o", ms=3, capsize=3, label=label)
                ax.set_title(GAP_TITLES[panel])
        if panel != "correlation" and positive:
            ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        if panel == "correlation" or len(spec.keys) > 1:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("mean output distance (train), 95 % CI")
    fig.suptitle(f"{spec.name}: decomposition against {xlabel} (Figure 5 style)")
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
