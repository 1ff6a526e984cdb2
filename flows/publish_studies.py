"""Prefect table artifacts of the appendix studies inside a decomposition run: Table 8
(two-stage LOO) when ``two_stage`` ran, and Figure 6's detection table when ``mislabel`` is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.reports.results import Results, num
from tasks.reports.study_sections import read_detection_run, table8_rows


def detection_rows(out: Path, plan: Any) -> list[dict[str, Any]]:
    """One row per inspection order: share found at each inspected fraction, and the AUC."""
    found, auc = read_detection_run(out, plan)
    rows = []
    for r in auc.itertuples(index=False):
        row: dict[str, Any] = {"order": r.method, "auc": num(r.auc, 4)}
        if r.method == "random":
            row["auc_interval"] = f"[{num(r.low, 3)}, {num(r.high, 3)}]"
        for f in found[found["method"] == r.method].itertuples(index=False):
            row[f"found_at_{round(100 * f.inspected)}"] = num(f.found, 4)
        rows.append(row)
    return rows


def publish_studies(out: Path, cfg: Any, plan: Any, *, scope: str) -> None:
    """Tables 8 and Figure 6 (when the study has them) under keys ``SCOPE-…``."""
    name = scope
    if "two_stage" in cfg.retrain.variants:
        create_table_artifact(
            table8_rows(Results.read(out, cfg, plan)),
            key=f"{name}-table8-two-stage",
            description="Table 8: two-stage LOO, warm start and PBRF vs influence",
        )
    if cfg.mislabel is not None:
        create_table_artifact(
            detection_rows(out, plan),
            key=f"{name}-figure6-mislabel",
            description="Figure 6: share of corrupted labels found vs inspected, and AUC",
        )
