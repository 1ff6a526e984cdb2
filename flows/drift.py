"""Each run's tables recorded with the code version; nightly runs checked for drift.

After publishing, the flow writes a record (:mod:`tasks.reports.history`) into the history directory —
``$PBRF_HISTORY``, else ``history/`` beside the run directory (``runs/history`` for the default
``runs/<preset>``). With ``drift_check`` (what the nightly deployment sets) it then compares the
run with its baseline — the last *accepted* run of the same preset, scale and code — publishes
a ``<scope>-drift`` markdown artifact naming the baseline with the table of what moved, and ends
the flow run ``Failed`` with a message starting ``Drifted:`` when something moved beyond its
interval, else ``Completed`` saying "no drift" or that this run is the first of its code.

Failed, not a Completed state with a custom name: Prefect's UI filters runs by state *name*
from a fixed list ("All except scheduled" is every listed name but Scheduled), so a custom name
is hidden from a deployment's default Runs view, and a Completed type shows green.

A run is accepted — becomes the baseline of the next — when it is the first of its code, shows
no drift, or is run with ``accept_baseline`` (the flow parameter a person sets after reviewing
an intended change). A drifted run is not accepted: the next ordinary nightly is compared with
the same baseline, not with the perturbed run.
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

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
        f"Baseline: **{prev['run_name']}** (run {prev['run_id']}, {prev['time']}), the last "
        "accepted run of this series and code; a run started with `accept_baseline` becomes "
        "the next baseline.",
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
    accept: bool = False,
    scope: str | None = None,
) -> State | dict[str, Any]:
    """Record the run; with ``check``, compare it with its baseline (the last accepted run) and
    return the final state (its data is ``result``). Without ``check``, return ``result``
    unchanged. ``accept``: this run becomes the baseline whatever it shows. ``scope``: the prefix
    of the drift artifact's key (the run's other artifacts share it)."""
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
    if not check:
        history.write_record(folder, record)
        return result
    prev = history.previous(folder, record)
    if prev is None:
        history.write_record(folder, {**record, "accepted": True})
        message = (
            f"no drift check: first run of {record['series']} with code "
            f"{record['code']['hash']} (recorded as the baseline)"
        )
        return Completed(message=message, data={**result, "drift": None})
    table = history.compare(prev, record)
    moved = table[table["moved"]]["metric"].tolist()
    history.write_record(folder, {**record, "accepted": accept or not moved})
    changes = history.config_changes(prev, record)
    key = scope or "".join(c if c.isalnum() else "-" for c in cfg.name.lower()).strip("-")
    create_markdown_artifact(
        drift_markdown(table, prev, record, changes),
        key=f"{key}-drift",
        description=f"{record['run_name']}: drift vs baseline {prev['run_name']}",
    )
    data = {**result, "drift": {"previous": prev["run_name"], "moved": moved, "accepted": accept}}
    if moved:
        shown = ", ".join(moved[:5]) + (" …" if len(moved) > 5 else "")
        message = (
            f"{DRIFTED}: {len(moved)} of {len(table)} numbers moved beyond their 95 % interval "
            f"vs baseline {prev['run_name']} ({shown})"
            + ("; accepted as the new baseline" if accept else "")
        )
        return Failed(message=message, data=data)
    message = (
        f"no drift vs baseline {prev['run_name']}: all {len(table)} numbers within their intervals"
    )
    return Completed(message=message, data=data)
