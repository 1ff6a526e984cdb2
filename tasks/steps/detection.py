"""Step ``detection``: Figure 6 — corrupted examples found against the fraction inspected, when
inspecting in decreasing self-influence (influence functions, PBRF) or in random order.

Writes the curves (``mislabel/curve.parquet``), the share found at each ``mislabel.inspect``
fraction with the random order's exact hypergeometric interval (``found.parquet``), the area
under each curve with the random order's closed-form mean and interval (``auc.parquet``) and the
figure (``figure6_mislabel_detection.png``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pbrf.mislabel import (
    detection_auc,
    detection_curve,
    found_at,
    random_auc,
    random_found_interval,
)
from tasks import schemas
from tasks.engine.artifacts import atomic_path
from tasks.engine.context import StepContext
from tasks.steps.retrain import TAIL_THRESHOLD

METHODS = ("influence", "pbrf")
TITLES = {"influence": "Influence", "pbrf": "PBRF", "random": "Random"}
Z95 = 1.959963984540054  # standard normal 97.5 % quantile
BAND_POINTS = 101  # points of the random order's interval band in the figure


def scores(ctx: StepContext) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, str]]:
    """Scores per method (by training row), the corrupted mask, and a note per method."""
    inf = ctx.read_table("mislabel_influence", schemas.MISLABEL_INFLUENCE)
    parts = [df for _, df in ctx.read_tables("mislabel_pbrf", schemas.MISLABEL_PBRF)]
    pbrf = pd.concat(parts, ignore_index=True)
    n = len(inf)
    out, notes = {}, {}
    for name, df in (("influence", inf), ("pbrf", pbrf)):
        df = df.sort_values("train_index")
        if df["train_index"].tolist() != list(range(n)):
            raise ValueError(f"{name} self-influence does not cover training rows 0..{n - 1}")
        out[name] = torch.tensor(df["self_influence"].to_numpy(), dtype=torch.float64)
    corrupted = torch.tensor(inf.sort_values("train_index")["corrupted"].to_numpy(), dtype=bool)
    notes["influence"] = (
        "" if inf["solver_converged"].astype(bool).all() else "the influence solve did not converge"
    )
    falling = int((pbrf["tail_decrease"] > TAIL_THRESHOLD).sum())
    notes["pbrf"] = f"PBRF objective still falling for {falling} of {n}" if falling else ""
    return out, corrupted, notes


def detection(ctx: StepContext) -> None:
    ml = ctx.cfg.mislabel
    by_method, corrupted, notes = scores(ctx)
    n, c = corrupted.numel(), int(corrupted.sum())
    curves = {m: detection_curve(s, corrupted) for m, s in by_method.items()}
    k = torch.arange(n + 1, dtype=torch.float64)
    curves["random"] = k / n  # E[found(k)] = k·C/N / C

    long = {"method": [], "examples": [], "inspected": [], "found": []}
    for method, found in curves.items():
        long["method"] += [method] * (n + 1)
        long["examples"] += list(range(n + 1))
        long["inspected"] += (k / n).tolist()
        long["found"] += found.tolist()
    ctx.write_table("mislabel_curve", schemas.MISLABEL_CURVE, long)

    rows = {f.name: [] for f in schemas.MISLABEL_FOUND.schema}
    for q in ml.inspect:
        for method in (*METHODS, "random"):
            kq, share = found_at(curves[method], q)
            low = high = None
            if method == "random":
                share, low, high = random_found_interval(n, c, kq)
            for key, value in zip(
                rows, (method, q, kq, share, low, high), strict=True
            ):  # fmt: skip
                rows[key].append(value)
    ctx.write_table("mislabel_found", schemas.MISLABEL_FOUND, rows)

    mean, sd = random_auc(n, c)
    aucs = {f.name: [] for f in schemas.MISLABEL_AUC.schema}
    for method in (*METHODS, "random"):
        if method == "random":
            values = (method, mean, mean - Z95 * sd, mean + Z95 * sd, n, c, "")
        else:
            values = (method, detection_auc(curves[method]), None, None, n, c, notes[method])
        for key, value in zip(aucs, values, strict=True):
            aucs[key].append(value)
    ctx.write_table("mislabel_auc", schemas.MISLABEL_AUC, aucs)
    figure6(curves, n, c, ctx.cfg.name, ctx.output_path("figure6"))


def figure6(curves: dict[str, torch.Tensor], n: int, c: int, name: str, path: Path) -> None:
    """The detection curves with the random order's 95 % band (Figure 6 style)."""
    fig = Figure(figsize=(5.2, 4.2), layout="constrained")
    ax = fig.subplots()
    x = torch.arange(n + 1, dtype=torch.float64) / n
    ks = sorted({round(i * n / (BAND_POINTS - 1)) for i in range(BAND_POINTS)})
    band = [random_found_interval(n, c, kk) for kk in ks]
    ax.fill_between(
        [kk / n for kk in ks],
        [b[1] for b in band],
        [b[2] for b in band],
        color="grey",
        alpha=0.25,
        lw=0,
        label="random, 95 % interval",
    )
    styles = {"random": ("grey", "--"), "influence": ("#4c72b0", "-"), "pbrf": ("#c44e52", "-")}
    for method in ("random", *METHODS):
        color, ls = styles[method]
        auc = detection_auc(curves[method])
        ax.plot(
            x, curves[method], color=color, ls=ls, lw=1.6, label=f"{TITLES[method]} (AUC {auc:.3f})"
        )
    ax.set_xlabel("fraction of training data inspected")
    ax.set_ylabel("fraction of mislabelled examples found")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{name}: mislabel detection by self-influence (Figure 6 style)", fontsize=9)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
