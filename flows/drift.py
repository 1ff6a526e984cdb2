"""Each run's tables recorded with the code version; nightly runs checked for drift.

After publishing, the flow writes a record (:mod:`tasks.reports.history`) into the history directory —
``$PBRF_HISTORY``, else ``history/`` beside the run directory (``runs/history`` for the default
``runs/<preset>``). With ``drift_check`` (what the nightly deployment sets) it then compares the
run with the previous run of the same preset, scale and code, publishes a ``<name>-drift``
markdown artifact with the table of what moved, and ends the flow run in a ``Completed`` state
named ``Drifted`` (something moved beyond its interval) or ``Completed`` with a message saying
"no drift" or that this run is the first of its code.
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from tasks.reports import history
from tasks.reports.results import Results, interval_decimals

HISTORY_ENV = "PBRF_HISTORY"
DRIFTED = "Drifted"


def history_dir(out: Path | str) -> Path:
    env = os.environ.get(HISTORY_ENV, "").strip()
    return Path(env) if env else Path(out).resolve().parent / "history"


def code_note() -> str:
    code = history.code_version()
    git = f", git {code['git']}" if code["git"] else ""
    return f"code {code['hash']}{git}"


def _cell(x: Any, d: int) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.{d}f}"


def drift_markdown(table: pd.DataFrame, prev: dict, cur: dict, changes: list[str]) -> str:
    moved = table[table["moved"]]
    verdict = (
        f"**drift**: {len(moved)} of {len(table)} numbers moved beyond the previous run's 95 % "
        "interval"
        if len(moved)
        else f"**no drift**: all {len(table)} numbers within the previous run's 95 % intervals"
    )
    lines = [
        f"## Drift check: {cur['run_name']} vs {prev['run_name']}",
        "",
        f"Series `{cur['series']}`, code {cur['code']['hash']} "
        f"(git {cur['code']['git'] or 'n/a'}); previous run at {prev['time']}.",
        "",
        verdict + ".",
        "",
    ]
    if changes:
        lines += ["Changed since the previous run:", "", *[f"- `{c}`" for c in changes], ""]
    lines += ["| metric | previous [95 % interval] | now | moved |", "|---|---|---|---|"]
    ordered = pd.concat([moved, table[~table["moved"]]])
    for r in ordered.itertuples(index=False):
        d = interval_decimals(r.previous_low, r.previous_high, r.previous)
        interval = (
            f" [{_cell(r.previous_low, d)}, {_cell(r.previous_high, d)}]"
            if r.previous_low is not None and not pd.isna(r.previous_low)
            else ""
        )
        now = _cell(r.now, d + 1 if r.moved else d)
        flag = "**moved**" if r.moved else ""
        lines.append(f"| {r.metric} | {_cell(r.previous, d)}{interval} | {now} | {flag} |")
    return "\n".join(lines) + "\n"


def record_run(
    out: Path,
    cfg: Any,
    plan: Any,
    *,
    preset: str,
    scale: str | None,
    env: dict[str, Any],
    check: bool,
    result: dict[str, Any],
) -> State | dict[str, Any]:
    """Record the run; with ``check``, compare it with the previous one and return the final
    state (its data is ``result``). Without ``check``, return ``result`` unchanged."""
    from prefect.runtime import flow_run

    res = Results.read(out, cfg, plan)
    record = history.make_record(
        res,
        preset=preset,
        scale=scale,
        run_name=str(flow_run.name or "local"),
        run_id=str(flow_run.id or "local"),
        env=env,
        checked=check,
    )
    folder = history_dir(out)
    history.write_record(folder, record)
    if not check:
        return result
    prev = history.previous(folder, record)
    if prev is None:
        message = (
            f"no drift check: first run of {record['series']} with code "
            f"{record['code']['hash']} (recorded as the baseline)"
        )
        return Completed(message=message, data={**result, "drift": None})
    table = history.compare(prev, record)
    changes = history.config_changes(prev, record)
    key = "".join(c if c.isalnum() else "-" for c in cfg.name.lower()).strip("-")
    create_markdown_artifact(
        drift_markdown(table, prev, record, changes),
        key=f"{key}-drift",
        description=f"{record['run_name']}: drift vs {prev['run_name']}",
    )
    moved = table[table["moved"]]["metric"].tolist()
    data = {**result, "drift": {"previous": prev["run_name"], "moved": moved}}
    if moved:
        shown = ", ".join(moved[:5]) + (" …" if len(moved) > 5 else "")
        message = (
            f"drift vs {prev['run_name']}: {len(moved)} of {len(table)} numbers moved beyond "
            f"their 95 % interval ({shown})"
        )
        return Completed(name=DRIFTED, message=message, data=data)
    message = f"no drift vs {prev['run_name']}: all {len(table)} numbers within their intervals"
    return Completed(message=message, data=data)
