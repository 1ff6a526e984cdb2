"""Where each artifact of one run lives, and which files each step reads and writes.

One run = one output directory (``runs/<preset>`` for ``pbrf run``, ``artifacts/`` for DVC)::

    config.json                     the validated StudyConfig of the last run into this directory
    prepare/dataset.pt              split, standardized tensors (x/t train/test) + task metadata
    base/theta0.pt, theta_s.pt      θ⁰ and θˢ as state dicts; base/orders.pt: the (K, N) batch order
    base/history.parquet            base objective per epoch
    select/removed.parquet          the M removal sets; select/test_points.parquet
    retrain/<variant>/params.pt     stacked (M, …) state dict of the variant's optima
    retrain/<variant>/removals.parquet, history.parquet
    influence/params.pt             stacked θ_IF = θˢ + ε·ihvp; removals.parquet; solver.parquet
    aggregate/*.parquet             gaps (Table 5), correlations (Table 2), horizons, …
    report/                         report.md, figure PNGs, metrics.json, CSVs for DVC plots
    .prefect/results/               Prefect's persisted task results / cache records (pbrf run)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pbrf.config import VARIANTS, StudyConfig


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __init__(self, root: Path | str):
        object.__setattr__(self, "root", Path(root))

    # ---------------------------------------------------------------- files
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def dataset(self) -> Path:
        return self.root / "prepare" / "dataset.pt"

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def theta0(self) -> Path:
        return self.base_dir / "theta0.pt"

    @property
    def theta_s(self) -> Path:
        return self.base_dir / "theta_s.pt"

    @property
    def orders(self) -> Path:
        return self.base_dir / "orders.pt"

    @property
    def base_history(self) -> Path:
        return self.base_dir / "history.parquet"

    @property
    def removed(self) -> Path:
        return self.root / "select" / "removed.parquet"

    @property
    def test_points(self) -> Path:
        return self.root / "select" / "test_points.parquet"

    def variant_dir(self, variant: str) -> Path:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
        return self.root / "retrain" / variant

    def variant_params(self, variant: str) -> Path:
        return self.variant_dir(variant) / "params.pt"

    def variant_removals(self, variant: str) -> Path:
        return self.variant_dir(variant) / "removals.parquet"

    def variant_history(self, variant: str) -> Path:
        return self.variant_dir(variant) / "history.parquet"

    @property
    def influence_dir(self) -> Path:
        return self.root / "influence"

    @property
    def influence_params(self) -> Path:
        return self.influence_dir / "params.pt"

    @property
    def influence_removals(self) -> Path:
        return self.influence_dir / "removals.parquet"

    @property
    def solver(self) -> Path:
        return self.influence_dir / "solver.parquet"

    @property
    def aggregate_dir(self) -> Path:
        return self.root / "aggregate"

    def aggregate(self, name: str) -> Path:
        return self.aggregate_dir / f"{name}.parquet"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_md(self) -> Path:
        return self.report_dir / "report.md"

    @property
    def metrics(self) -> Path:
        return self.report_dir / "metrics.json"

    @property
    def prefect_results(self) -> Path:
        return self.root / ".prefect" / "results"

    # ---------------------------------------------------------------- per step
    def outputs(self, step: str, variant: str | None = None) -> list[Path]:
        """The artifacts ``step`` writes (each carries the step's config hash)."""
        if step == "prepare":
            return [self.dataset]
        if step == "train_base":
            return [self.theta0, self.theta_s, self.orders, self.base_history]
        if step == "select":
            return [self.removed, self.test_points]
        if step == "retrain":
            v = _need_variant(step, variant)
            return [self.variant_params(v), self.variant_removals(v), self.variant_history(v)]
        if step == "influence":
            return [self.influence_params, self.influence_removals, self.solver]
        if step == "aggregate":
            return [self.aggregate(n) for n in AGGREGATE_TABLES]
        if step == "report":
            d = self.report_dir
            figures = [d / f for f in REPORT_FILES]
            return [*figures, self.metrics, self.report_md]  # report.md last: written last
        raise ValueError(f"unknown step {step!r}")

    def inputs(self, step: str, cfg: StudyConfig, variant: str | None = None) -> list[Path]:
        """The upstream artifacts ``step`` reads (their bytes enter the Prefect cache key)."""
        if step == "prepare":
            return []
        if step in ("train_base", "select"):
            return self.outputs("prepare")
        if step in ("retrain", "influence"):
            return [*self.outputs("prepare"), *self.outputs("train_base"), *self.outputs("select")]
        if step == "aggregate":
            files = [*self.outputs("prepare"), *self.outputs("train_base")]
            for v in cfg.retrain.variants:
                files += self.outputs("retrain", v)
            return files + self.outputs("influence")
        if step == "report":
            return [*self.outputs("aggregate"), self.solver]
        raise ValueError(f"unknown step {step!r}")


REPORT_FILES = (
    "figure1_test_loss_scatter.png",
    "figure4_gaps.png",
    "test_loss_changes.csv",
    "gaps.csv",
)
AGGREGATE_TABLES = ("gaps_per_removal", "gaps", "correlations", "test_loss_changes", "horizons")


def _need_variant(step: str, variant: str | None) -> str:
    if variant is None:
        raise ValueError(f"step {step!r} needs a variant")
    return variant
