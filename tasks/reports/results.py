"""The finished tables of one run, read back with their stamps checked, and how to show them.

Used by the report step, ``pbrf report``/``pbrf run`` summaries and the Prefect artifacts, so the
numbers users see are formatted in one place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tasks import schemas
from tasks.engine import artifacts
from tasks.engine.manifest import read_output
from tasks.engine.plan import Plan, build_plan

GAP_TITLES = {
    "warm_start": "Warm-Start",
    "proximity": "Proximity",
    "non_convergence": "Non-Convergence",
    "linearization": "Linearization",
    "solver": "Solver",
}
SOURCE_TITLES = {
    "cold": "Cold-Start (LOO)",
    "warm": "Warm-Start",
    "proximal": "Proximal",
    "pbrf": "PBRF",
    "linearized_pbrf": "Linearized PBRF",
    "pbrf_paper": "PBRF (paper setting)",
    "linearized_pbrf_paper": "Linearized PBRF (paper setting)",
    "influence_params": "IF parameters θˢ + Δ_IF",
    "two_stage": "Two-Stage LOO",
}
# the paper trained its PBRF for K/2 epochs at lr/10: its Table 5 gaps after Proximity and its
# PBRF correlations are paired with this project's paper-setting variants; the gaps and the
# correlation through the horizon-matched PBRF are this project's added rows
PAPER_SETTING_GAPS = {
    "warm_start": "warm_start",
    "proximity": "proximity",
    "non_convergence": "non_convergence_paper",
    "linearization": "linearization_paper",
    "solver": "solver_paper",
}
ALL_GAP_TITLES = {
    **GAP_TITLES,
    **{f"{g}_paper": f"{t} (paper setting)" for g, t in GAP_TITLES.items()},
}
# this project's source → the paper's column it is paired with (Tables 2, 6, 7, 8)
PAPER_PAIRS = {"cold": "cold", "warm": "warm", "pbrf_paper": "pbrf", "two_stage": "two_stage"}
TABLE2_REFERENCES = ("cold", "warm", "pbrf_paper", "pbrf")
AGGREGATES = {
    "gaps": schemas.GAPS,
    "correlations": schemas.CORRELATIONS,
    "test_loss_changes": schemas.TEST_LOSS_CHANGES,
    "horizons": schemas.HORIZONS,
    "precision": schemas.PRECISION,
    "convergence": schemas.CONVERGENCE,
}


@dataclass
class Results:
    """The aggregate tables of one run."""

    cfg: Any
    gaps: pd.DataFrame
    correlations: pd.DataFrame
    test_loss_changes: pd.DataFrame
    horizons: pd.DataFrame
    precision: pd.DataFrame
    convergence: pd.DataFrame
    solver: dict[str, Any]

    @classmethod
    def read(cls, root: Path | str, cfg: Any, plan: Plan | None = None) -> Results:
        root = Path(root)
        plan = plan or build_plan(cfg.model_dump(mode="json"))
        agg = plan.of_step("aggregate")[0]
        tables = {name: read_output(root, agg, name, schema) for name, schema in AGGREGATES.items()}
        inf = plan.of_step("influence")[0]
        solver = read_output(root, inf, "solver", schemas.SOLVER)
        return cls(cfg=cfg, solver=solver.iloc[0].to_dict(), **tables)

    # ------------------------------------------------------------------ views
    def wide_changes(self) -> pd.DataFrame:
        wide = self.test_loss_changes.pivot(
            index="removal_id", columns="source", values="test_loss_change"
        )
        cols = ["influence", *[s for s in SOURCE_TITLES if s in wide.columns]]
        return wide[cols].reset_index()

    def output_scale(self) -> float | None:
        return float(self.gaps["output_scale"].iloc[0]) if len(self.gaps) else None

    def warnings(self) -> list[str]:
        """Convergence and horizon warnings, one line each."""
        out = [
            f"{r.source}: {r.message}"
            for r in self.convergence.itertuples(index=False)
            if r.message
        ]
        out += [
            r.message
            for r in self.horizons.itertuples(index=False)
            if r.mismatch and r.setting != "paper"
        ]
        floor = self.correlations[self.correlations["at_rounding_floor"].astype(bool)]
        out += [
            f"correlation with {r.reference} is computed on test-loss changes at the rounding "
            "floor of the loss"
            for r in floor.itertuples(index=False)
        ]
        return out

    def metrics(self) -> dict[str, Any]:
        """DVC metrics: gap means and correlations with their intervals, horizons."""
        return {
            "experiment": self.cfg.name,
            "output_scale": sig(self.output_scale()),
            "gaps": {
                r.gap: {"mean": sig(r.mean), "low": sig(r.ci_low), "high": sig(r.ci_high)}
                for r in self.gaps.itertuples(index=False)
            },
            "correlations": {
                r.reference: {
                    "pearson": sig(r.pearson),
                    "pearson_low": sig(r.pearson_low),
                    "pearson_high": sig(r.pearson_high),
                    "spearman": sig(r.spearman),
                    "spearman_low": sig(r.spearman_low),
                    "spearman_high": sig(r.spearman_high),
                }
                for r in self.correlations.itertuples(index=False)
            },
            "horizons": {
                r.variant: {"horizon": sig(r.horizon), "ratio": sig(r.ratio)}
                for r in self.horizons.itertuples(index=False)
            },
            "warnings": len(self.warnings()),
        }


# --------------------------------------------------------------------------- formatting


def num(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe float rounded to ``digits`` significant decimals (None for NaN/None)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, digits)


def fmt(x: Any, spec: str = ".3f") -> str:
    v = None if x is None else float(x)
    return "n/a" if v is None or math.isnan(v) else format(v, spec)


def gap_cell(r: Any) -> str:
    return f"{fmt(r.mean)} ± {fmt(r.std)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]"


def corr_cell(value: Any, low: Any, high: Any) -> str:
    return f"{fmt(value, '.2f')} [{fmt(low, '.2f')}, {fmt(high, '.2f')}]"


def write_json_summary(path: Path, obj: Any) -> None:
    artifacts.write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def interval_decimals(low: Any, high: Any, value: Any = None, *, sig: int = 2) -> int:
    """Decimals that show an interval's width to ``sig`` significant digits (the precision that
    matters); without a usable interval, 3 significant digits of ``value``."""
    lo, hi, v = (None if x is None else float(x) for x in (low, high, value))
    # at most 6 significant digits of the value: a zero-width bootstrap interval (every
    # resample agrees) has a width of rounding noise, not a precision
    most = 6 if v is None or not math.isfinite(v) or v == 0 else 5 - math.floor(math.log10(abs(v)))
    if lo is not None and hi is not None and math.isfinite(hi - lo) and hi > lo:
        return max(0, min(sig - 1 - math.floor(math.log10(hi - lo)), most))
    return max(0, most - 3)


def rounded(x: Any, decimals: int) -> float | None:
    """``x`` rounded to ``decimals`` places, JSON-safe (None for NaN/None)."""
    return num(x, decimals)


def sig(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe float rounded to ``digits`` significant digits (None for NaN/None): DVC
    metrics keep the same relative precision for a gap of 3e-06 as for one of 0.2."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or x == 0 or math.isinf(x):
        return None if math.isnan(x) else x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))
