"""Collect a finished sweep: one tidy table, the Figure-5 style plot, and a report section.

Reads every point's aggregate tables (stamps checked) and writes into ``<sweep>/sweep/``:

* ``table.parquet`` (schema :data:`tasks.schemas.SWEEP`) and ``table.csv`` — per point, each
  gap of Table 5 and each influence correlation of Table 2 with its 95 % bootstrap interval,
  the removal size, and the PBRF and LiSSA horizons with their ratio η·S/(T/σ);
* ``figure5.png`` — each of the five terms (and the Spearman correlations of influence with
  LOO and with the PBRF) against the swept value, log axes where the grid is logarithmic;
* ``report.md`` — the table, the plot, and for each trend the paper predicts whether it
  appears (:func:`tasks.sweeps.trends.trend_verdict`).

A manifest (``<sweep>/.pbrf/collect.json``: the spec, the points' aggregate outputs by hash,
the code) makes a rerun of a finished sweep rewrite nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from tasks import schemas
from tasks.engine import artifacts, manifest
from tasks.engine.codehash import code_hash
from tasks.reports.results import GAP_TITLES, Results, fmt
from tasks.sweeps.figure import sweep_figure
from tasks.sweeps.points import SweepPlan, divergence, point_dir
from tasks.sweeps.trends import TrendVerdict, trend_verdicts

OUT_DIR = "sweep"
OUTPUTS = {
    "table": "sweep/table.parquet",
    "csv": "sweep/table.csv",
    "figure": "sweep/figure5.png",
    "report": "sweep/report.md",
}
COLLECT_MANIFEST = Path(".pbrf") / "collect.json"
CORRELATION_REFERENCES = ("cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper")


def _point_rows(sp: SweepPlan, root: Path, pid: str) -> list[dict[str, Any]]:
    point = sp.point(pid)
    res = Results.read(point_dir(root, pid), point.config, sp.plans[pid])
    cfg = point.config
    n_train = round(1.0 / float(res.solver["epsilon"]))
    hz = res.horizons.set_index("variant")
    pbrf_h = _float(hz.loc["pbrf", "horizon"]) if "pbrf" in hz.index else None
    lissa_h = _float(res.horizons["lissa_horizon"].iloc[0]) if len(hz) else None
    keys = sp.spec.keys
    common = {
        "sweep": sp.spec.name,
        "point": pid,
        "key": keys[0],
        "value": _float(point.values[keys[0]]),
        "key2": keys[1] if len(keys) > 1 else None,
        "value2": _float(point.values[keys[1]]) if len(keys) > 1 else None,
        "lr": _float(getattr(cfg.train.optimizer, "lr", None)),
        "n": cfg.select.num_removals,
        "removal_size": cfg.select.size(n_train),
        "output_scale": _float(res.output_scale()),
        "pbrf_horizon": pbrf_h,
        "lissa_horizon": lissa_h,
        "horizon_ratio": pbrf_h / lissa_h if pbrf_h and lissa_h else None,
        "warnings": len(res.warnings()),
    }
    rows = [
        {
            **common,
            "quantity": "gap",
            "term": r.gap,
            "estimate": r.mean,
            "std": r.std,
            "low": r.ci_low,
            "high": r.ci_high,
        }
        for r in res.gaps.itertuples(index=False)
    ]
    for r in res.correlations.itertuples(index=False):
        if r.reference not in CORRELATION_REFERENCES:
            continue
        for method in ("pearson", "spearman"):
            rows.append(
                {
                    **common,
                    "quantity": method,
                    "term": r.reference,
                    "estimate": getattr(r, method),
                    "std": None,
                    "low": getattr(r, f"{method}_low"),
                    "high": getattr(r, f"{method}_high"),
                }
            )
    return rows


def _float(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def unfinished(sp: SweepPlan, root: Path | str) -> dict[str, str]:
    """Points whose aggregate is not current, and why (the node that diverged, or not run)."""
    root = Path(root)
    out = {}
    for p in sp.points:
        proot, plan = point_dir(root, p.id), sp.plans[p.id]
        if manifest.status(proot, plan.of_step("aggregate")[0]).current:
            continue
        out[p.id] = "not run yet"
        for node in plan:
            msg = divergence(root, p.id, node)
            if msg is not None and not manifest.status(proot, node).current:
                out[p.id] = f"{node.id} diverged: {msg}"
                break
    return out


def sweep_table(sp: SweepPlan, root: Path | str) -> pd.DataFrame:
    """The tidy table of every finished point (in grid order) as a DataFrame with
    :data:`SWEEP`'s columns."""
    root = Path(root)
    skip = unfinished(sp, root)
    rows = [row for p in sp.points if p.id not in skip for row in _point_rows(sp, root, p.id)]
    cols = [f.name for f in schemas.SWEEP.schema]
    return pd.DataFrame(rows, columns=cols)


def per_removal_gaps(sp: SweepPlan, root: Path | str) -> pd.DataFrame:
    """Every point's gaps per removal (long), with ``removals``: the config stamp of the
    point's ``select`` node — equal stamps, the same removal sets (paired comparisons)."""
    root = Path(root)
    parts = []
    skip = unfinished(sp, root)
    for p in sp.points:
        if p.id in skip:
            continue
        agg = sp.plans[p.id].of_step("aggregate")[0]
        df = manifest.read_output(
            point_dir(root, p.id), agg, "gaps_per_removal", schemas.GAPS_PER_REMOVAL
        )
        parts.append(
            df.rename(columns={"gap": "term"})[["term", "removal_id", "distance"]].assign(
                point=p.id, removals=sp.plans[p.id]["select"].stamp
            )
        )
    cols = ["term", "removal_id", "distance", "point", "removals"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def x_values(sp: SweepPlan, table: pd.DataFrame) -> pd.Series:
    """The plotted x of each row: the swept value, or the horizon ratio η·S/(T/σ)."""
    return table["horizon_ratio"] if sp.spec.x == "horizon_ratio" else table["value"]


# --------------------------------------------------------------------------- markdown


def _corr(row: pd.Series | None) -> str:
    if row is None:
        return "—"
    return f"{fmt(row.estimate, '.2f')} [{fmt(row.low, '.2f')}, {fmt(row.high, '.2f')}]"


def summary_rows(sp: SweepPlan, table: pd.DataFrame) -> list[dict[str, str]]:
    """One row per point: swept value(s), the five gaps and two Spearman correlations, as text."""
    out = []
    for pid, group in table.groupby("point", sort=False):
        g = {r.term: r for r in group[group["quantity"] == "gap"].itertuples(index=False)}
        s = {r.term: r for r in group[group["quantity"] == "spearman"].itertuples(index=False)}
        first = group.iloc[0]
        row = {k: _value_text(sp.point(str(pid)).values[k]) for k in sp.spec.keys}
        if sp.spec.x == "horizon_ratio" or first["horizon_ratio"] is not None:
            row["η·S / (T/σ)"] = fmt(first["horizon_ratio"], ".3g")
        for gap, title in GAP_TITLES.items():
            r = g.get(gap)
            row[title] = (
                "—"
                if r is None
                else f"{fmt(r.estimate, '.4g')} [{fmt(r.low, '.3g')}, {fmt(r.high, '.3g')}]"
            )
        pr = {r.term: r for r in group[group["quantity"] == "pearson"].itertuples(index=False)}
        row["Spearman IF vs LOO"] = _corr(s.get("cold"))
        row["Spearman IF vs PBRF"] = _corr(s.get("pbrf"))
        row["Pearson IF vs PBRF"] = _corr(pr.get("pbrf"))
        row["warnings"] = str(int(first["warnings"]))
        out.append(row)
    return out


def _value_text(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no points)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(
    sp: SweepPlan,
    table: pd.DataFrame,
    verdicts: list[TrendVerdict],
    missing: dict[str, str] | None = None,
) -> str:
    spec = sp.spec
    keys = ", ".join(f"`{k}`" for k in spec.keys)
    base = sp.points[0].config
    parts = [
        f"## Sweep {spec.name}",
        "",
        f"{spec.description}. Study `{spec.preset}`"
        + (f" at scale `{spec.preset_scale}`" if spec.preset_scale else "")
        + f" ({base.model.name} on {base.data.name}), swept over {keys}; "
        f"{len(sp.points)} points, M = {base.select.num_removals} removal sets each. Gaps: mean "
        "output distance over the training inputs [95 % bootstrap interval over the removals]; "
        "correlations: influence-predicted vs actual test-loss change [95 % interval].",
    ]
    if spec.overrides:
        over = ", ".join(f"`{k}={v}`" for k, v in spec.overrides.items())
        parts += ["", f"Overrides on every point: {over}."]
    parts += ["", markdown_table(summary_rows(sp, table)), ""]
    if missing:
        parts += ["Points without results:", ""]
        parts += [f"- `{pid}`: {why}" for pid, why in missing.items()]
        parts += [""]
    if verdicts:
        parts += ["### Trends", ""]
        parts += [f"- {v.text}" for v in verdicts]
        parts += [""]
    parts += [f"![{spec.name}](figure5.png)", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- collect


def _collect_key(sp: SweepPlan, root: Path) -> str:
    files = {}
    skip = unfinished(sp, root)
    for p in sp.points:
        if p.id in skip:
            continue
        proot = point_dir(root, p.id)
        for node in sp.plans[p.id].of_step("aggregate"):
            for rel in node.outputs.values():
                files[f"{p.id}/{rel}"] = manifest.file_sha256(proot / rel)
    blob = {
        "unfinished": unfinished(sp, root),
        "spec": sp.spec.model_dump(mode="json"),
        "points": [p.id for p in sp.points],
        "files": files,
        "code": code_hash("tasks.sweeps.collect:collect"),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def collect_current(sp: SweepPlan, root: Path | str) -> bool:
    """Whether the collected outputs are current for these points' aggregates and this code."""
    root = Path(root)
    path = root / COLLECT_MANIFEST
    if not path.is_file():
        return False
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        key = _collect_key(sp, root)
    except (OSError, ValueError):
        return False
    if rec.get("key") != key:
        return False
    return all(
        (root / rel).is_file() and manifest.file_sha256(root / rel) == digest
        for rel, digest in rec.get("outputs", {}).items()
    ) and set(rec.get("outputs", {})) == set(OUTPUTS.values())


def collect(sp: SweepPlan, root: Path | str, *, force: bool = False) -> dict[str, Any]:
    """Write the table, CSV, figure and report of the finished points (unless current); return
    ``{"state": "Completed"|"Cached", "table": DataFrame, "verdicts": [...], "unfinished":
    {point: why}}``."""
    root = Path(root)
    table = sweep_table(sp, root)
    verdicts = trend_verdicts(sp.spec, table, x_values(sp, table), per_removal_gaps(sp, root))
    missing = unfinished(sp, root)
    out = {"table": table, "verdicts": verdicts, "unfinished": missing}
    if collect_current(sp, root) and not force:
        return {"state": "Cached", **out}
    stamp = _collect_key(sp, root)[:16]
    artifacts.write_table(
        root / OUTPUTS["table"],
        schemas.SWEEP,
        {c: table[c].tolist() for c in table.columns},
        step="sweep",
        stamp=stamp,
    )
    csv = table.to_csv(index=False, float_format=lambda v: repr(float(v)), lineterminator="\n")
    artifacts.write_text(root / OUTPUTS["csv"], csv)
    sweep_figure(sp.spec, table, x_values(sp, table), root / OUTPUTS["figure"])
    artifacts.write_text(root / OUTPUTS["report"], report_markdown(sp, table, verdicts, missing))
    artifacts.write_json(
        root / COLLECT_MANIFEST,
        {
            "key": _collect_key(sp, root),
            "outputs": {rel: manifest.file_sha256(root / rel) for rel in OUTPUTS.values()},
        },
    )
    return {"state": "Completed", **out}


def read_sweep_table(root: Path | str) -> pd.DataFrame:
    """The collected table of a sweep directory (provenance checked by schema)."""
    return artifacts.read_table(
        Path(root) / OUTPUTS["table"], schemas.SWEEP, step="sweep", stamp=None
    )
