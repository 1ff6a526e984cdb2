"""Run records for drift checks: each run's tables with the code version, and what moved.

Every finished flow run writes one JSON record into ``<history>/<series>/`` (``series`` is the
preset and scale, e.g. ``digits-mlp-smoke``): the run's name and id, the time, the code version
(:func:`code_version`), the full config, the environment, and Table 5 (gap means with their
95 % intervals) and Table 2 (Pearson and Spearman correlations with their intervals).

:func:`previous` finds the last record of the same series *and code* (the last drift-checked
one, for a drift-checked run); :func:`compare` says which
numbers moved: a number has drifted when the new estimate lies outside the previous run's 95 %
interval for it (or, where that interval is missing, differs from it at all). With unchanged
code, config, thread count and device a rerun is bit-identical, so any drift means the setting,
the environment or the machine changed something. Plain Python: no Prefect here.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.engine.artifacts import write_json
from tasks.engine.codehash import ROOT, code_files

RECORD_VERSION = 1


@cache
def code_version() -> dict[str, str | None]:
    """``{"hash": 12 hex digits, "git": git describe}`` of the code that computes results.

    The hash covers every source file a registered step imports (:mod:`tasks.engine.codehash`), so it
    decides "same code" (uncommitted edits count; orchestration and docs do not); ``git`` is for
    people.
    """
    from pbrf.estimators.registry import MODULES
    from tasks.registry import STEPS

    modules = [step.function.split(":")[0] for step in STEPS.values()] + list(MODULES.values())
    files = code_files(modules)
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    git: str | None = None
    try:
        res = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        git = res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"hash": h.hexdigest()[:12], "git": git}


def series_name(preset: str, scale: str | None) -> str:
    return f"{preset}-{scale}" if scale else preset


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def tables(res: Any) -> dict[str, list[dict[str, Any]]]:
    """Table 5 and Table 2 of a :class:`tasks.reports.results.Results` as JSON rows (full precision)."""
    gaps = [
        {"gap": r.gap, "mean": _f(r.mean), "low": _f(r.ci_low), "high": _f(r.ci_high)}
        for r in res.gaps.itertuples(index=False)
    ]
    corr = [
        {
            "reference": r.reference,
            "pearson": _f(r.pearson),
            "pearson_low": _f(r.pearson_low),
            "pearson_high": _f(r.pearson_high),
            "spearman": _f(r.spearman),
            "spearman_low": _f(r.spearman_low),
            "spearman_high": _f(r.spearman_high),
        }
        for r in res.correlations.itertuples(index=False)
    ]
    return {"gaps": gaps, "correlations": corr}


def make_record(
    res: Any,
    *,
    preset: str,
    scale: str | None,
    run_name: str,
    run_id: str,
    env: dict[str, Any],
    checked: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record of one finished run (``res``: its :class:`tasks.reports.results.Results`);
    ``checked``: a drift-checked (nightly) run, the baseline of the next one."""
    now = now or datetime.now(UTC)
    return {
        "version": RECORD_VERSION,
        "series": series_name(preset, scale),
        "preset": preset,
        "scale": scale,
        "run_name": run_name,
        "run_id": run_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "code": code_version(),
        "config": res.cfg.model_dump(mode="json"),
        "env": env,
        "checked": checked,
        "tables": tables(res),
    }


def write_record(history: Path | str, record: dict[str, Any]) -> Path:
    stamp = record["time"].replace(":", "").replace("-", "")
    path = Path(history) / record["series"] / f"{stamp}-{record['run_id'][:8]}.json"
    return write_json(path, record)


def read_records(history: Path | str, series: str) -> list[dict[str, Any]]:
    """Every readable record of ``series``, oldest first."""
    folder = Path(history) / series
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if rec.get("version") == RECORD_VERSION:
            out.append(rec)
    return sorted(out, key=lambda r: r["time"])


def previous(history: Path | str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline of ``record``: the latest earlier record of the same series and code hash;
    for a drift-checked (nightly) run, the latest *accepted* one (first of its code, no drift,
    or accepted on purpose), so a drifted or hand-run record never becomes the baseline.
    Records written before acceptance existed count as accepted when drift-checked."""
    same = [
        r
        for r in read_records(history, record["series"])
        if r["code"]["hash"] == record["code"]["hash"]
        and (r.get("accepted", r.get("checked")) or not record.get("checked"))
        and r["time"] < record["time"]
        and r["run_id"] != record["run_id"]
    ]
    return same[-1] if same else None


# --------------------------------------------------------------------------- comparison


def _numbers(record: dict[str, Any]) -> dict[str, tuple[float | None, float | None, float | None]]:
    """``metric → (estimate, low, high)`` for every gap mean and correlation of a record."""
    out = {}
    for g in record["tables"]["gaps"]:
        out[f"gap {g['gap']}"] = (g["mean"], g["low"], g["high"])
    for c in record["tables"]["correlations"]:
        for kind in ("pearson", "spearman"):
            out[f"{kind} {c['reference']}"] = (c[kind], c[f"{kind}_low"], c[f"{kind}_high"])
    return out


def _moved(now: float | None, was: float | None, low: float | None, high: float | None) -> bool:
    if now is None or was is None:
        return (now is None) != (was is None)
    if low is not None and high is not None:
        return not (low <= now <= high)
    return not math.isclose(now, was, rel_tol=1e-9, abs_tol=1e-15)


def compare(prev: dict[str, Any], cur: dict[str, Any]) -> pd.DataFrame:
    """One row per gap mean and correlation: previous estimate and interval, now, moved."""
    before, after = _numbers(prev), _numbers(cur)
    rows = []
    for metric in [*before, *(m for m in after if m not in before)]:
        was, low, high = before.get(metric, (None, None, None))
        now = after.get(metric, (None, None, None))[0]
        rows.append(
            {
                "metric": metric,
                "previous": was,
                "previous_low": low,
                "previous_high": high,
                "now": now,
                "moved": _moved(now, was, low, high),
            }
        )
    return pd.DataFrame(rows)


def config_changes(prev: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    """``config.key: old → new`` (and ``env.…``) for every value that differs between records."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else k))
        return out

    a = flat({"config": prev["config"], "env": prev.get("env", {})})
    b = flat({"config": cur["config"], "env": cur.get("env", {})})
    keys = sorted(a.keys() | b.keys())
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
