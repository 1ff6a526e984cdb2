"""Prefect artifacts of a finished run: Table 5 and Table 2 as tables, the report as markdown.

Numbers are rounded to the precision their 95 % interval supports (the interval's width to two
significant digits; three significant digits where there is no interval). The report's figures
are embedded in the markdown artifact as ``data:`` URIs, so the Prefect UI shows them without
access to the run directory.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.params import artifact_key
from tasks.reports.report import table2_markdown, table5_markdown
from tasks.reports.results import Results, interval_decimals, rounded

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s:]+\.png)\)")


def artifact_scope(preset: str, scale: str | None, flow: str | None = None) -> str:
    """The prefix of a run's artifact keys: preset, scale and flow, e.g.
    ``digits-mlp-smoke-grade``, so that two studies never overwrite each other's artifacts
    (a nightly smoke run and a grade run of the same preset publish under different keys)."""
    if flow is None:
        from prefect.runtime import flow_run

        flow = flow_run.flow_name or "local"
    return artifact_key("-".join(p for p in (preset, scale, flow) if p))


def embed_figures(markdown: str, folder: Path) -> str:
    """Replace each relative ``![alt](figure.png)`` by the image inlined as a ``data:`` URI."""

    def inline(m: re.Match[str]) -> str:
        path = folder / m.group(2)
        if not path.is_file():
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"![{m.group(1)}](data:image/png;base64,{data})"

    return _IMAGE.sub(inline, markdown)


def gap_rows(res: Results) -> list[dict[str, Any]]:
    rows = []
    for r in res.gaps.itertuples(index=False):
        d = interval_decimals(r.ci_low, r.ci_high, r.mean)
        rows.append(
            {
                "Gap": r.gap,
                "Mean": rounded(r.mean, d),
                "SD": rounded(r.std, d),
                "CI low": rounded(r.ci_low, d),
                "CI high": rounded(r.ci_high, d),
                "n": int(r.n),
            }
        )
    return rows


def _corr(value: Any, low: Any, high: Any) -> tuple[float | None, str]:
    d = min(interval_decimals(low, high, value), 3)
    return rounded(value, d), f"[{rounded(low, d)}, {rounded(high, d)}]"


def correlation_rows(res: Results) -> list[dict[str, Any]]:
    rows = []
    for r in res.correlations.itertuples(index=False):
        pearson, pearson_ci = _corr(r.pearson, r.pearson_low, r.pearson_high)
        spearman, spearman_ci = _corr(r.spearman, r.spearman_low, r.spearman_high)
        rows.append(
            {
                "Reference": r.reference,
                "Pearson": pearson,
                "Pearson 95 % CI": pearson_ci,
                "Spearman": spearman,
                "Spearman 95 % CI": spearman_ci,
                "n": int(r.n),
            }
        )
    return rows


def publish(out: Path, cfg: Any, plan: Any, *, scope: str, note: str = "") -> None:
    """Publish the run's tables and report under keys ``SCOPE-…`` (:func:`artifact_scope`);
    ``note`` (e.g. the code version) heads each one."""
    res = Results.read(out, cfg, plan)
    name = scope
    suffix = f" — {note}" if note else ""
    create_table_artifact(
        gap_rows(res), key=f"{name}-table5-gaps", description=f"Table 5: gaps{suffix}"
    )
    create_table_artifact(
        correlation_rows(res),
        key=f"{name}-table2-correlations",
        description=f"Table 2: test-loss correlations{suffix}",
    )
    head = [f"_{note}_"] if note else []
    md = "\n\n".join(
        [*head, "## Table 5 (gaps)", table5_markdown(res), "## Table 2", table2_markdown(res)]
    )
    create_markdown_artifact(md, key=f"{name}-tables", description=f"{cfg.name}: tables")
    folder = Path(out) / "report"
    text = embed_figures((folder / "report.md").read_text(encoding="utf-8"), folder)
    if note:
        text = f"_{note}_\n\n{text}"
    create_markdown_artifact(text, key=f"{name}-report", description=f"{cfg.name}: report.md")
