"""Prefect artifacts of a finished run: Table 5 and Table 2 as tables, the report as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.report import table2_markdown, table5_markdown
from tasks.results import Results, num


def _key(text: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def publish(out: Path, cfg: Any, plan: Any) -> None:
    res = Results.read(out, cfg, plan)
    gaps = [
        {
            "gap": r.gap,
            "mean": num(r.mean, 4),
            "std": num(r.std, 4),
            "ci_low": num(r.ci_low, 4),
            "ci_high": num(r.ci_high, 4),
            "n": int(r.n),
        }
        for r in res.gaps.itertuples(index=False)
    ]
    corr = [
        {
            "reference": r.reference,
            "pearson": num(r.pearson, 3),
            "pearson_ci": f"[{num(r.pearson_low, 2)}, {num(r.pearson_high, 2)}]",
            "spearman": num(r.spearman, 3),
            "spearman_ci": f"[{num(r.spearman_low, 2)}, {num(r.spearman_high, 2)}]",
            "n": int(r.n),
        }
        for r in res.correlations.itertuples(index=False)
    ]
    name = _key(cfg.name)
    create_table_artifact(gaps, key=f"{name}-table5-gaps", description="Table 5: gaps")
    create_table_artifact(
        corr, key=f"{name}-table2-correlations", description="Table 2: test-loss correlations"
    )
    md = "\n\n".join(
        ["## Table 5 (gaps)", table5_markdown(res), "## Table 2", table2_markdown(res)]
    )
    create_markdown_artifact(md, key=f"{name}-tables", description=f"{cfg.name}: tables")
    text = (out / "report" / "report.md").read_text(encoding="utf-8")
    create_markdown_artifact(text, key=f"{name}-report", description=f"{cfg.name}: report.md")
