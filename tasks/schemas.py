"""Every Parquet table the pipeline writes: its columns, types and meaning (one place).

All tables carry key/value metadata in the Parquet footer:

* ``pbrf.schema`` — the table's name below, ``pbrf.schema_version`` — :data:`SCHEMA_VERSION`;
* ``pbrf.step`` — the step that wrote it, ``pbrf.config_hash`` — the hash of that step's config
  keys (:func:`tasks.fingerprint.config_hash`), checked by :func:`tasks.artifacts.read_table`.

Artifacts are deterministic functions of their inputs (no timestamps or timings), so a
recomputation with the same config and code reproduces the same bytes on the same machine and
does not invalidate downstream steps (Prefect cache keys and DVC both hash input bytes).

Conventions: ``removal_id`` numbers the M removal sets ``0..M−1`` in the order of
``select/removed.parquet``; a "test-loss change" is ``L_test(θ) − L_test(θˢ)``, the mean loss on the
selected test points (no regularizer), so positive means removal hurt; ``variant`` is one of
``cold, warm, proximal, pbrf, linearized_pbrf`` and ``source`` additionally ``influence``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class TableSchema:
    name: str
    schema: pa.Schema
    doc: str


def _t(name: str, doc: str, *fields: tuple[str, pa.DataType, str]) -> TableSchema:
    schema = pa.schema([pa.field(n, t, nullable=True, metadata={"doc": d}) for n, t, d in fields])
    return TableSchema(name, schema, doc)


_i32, _i64, _f64, _str, _bool = pa.int32(), pa.int64(), pa.float64(), pa.string(), pa.bool_()
_ids = pa.list_(pa.int64())

BASE_HISTORY = _t(
    "base_history",
    "base/history.parquet — the base run's mean training objective per epoch (per iteration "
    "for L-BFGS).",
    ("epoch", _i32, "epoch (or L-BFGS iteration) number, from 0"),
    ("objective", _f64, "mean cost J(θ) seen during the epoch"),
)

REMOVED = _t(
    "removed",
    "select/removed.parquet — the M removal sets, drawn without replacement with "
    "retrain.removal_seed; group_size rows per removal.",
    ("removal_id", _i32, "removal set 0..M−1"),
    ("position", _i32, "position within the set, 0..group_size−1"),
    ("train_index", _i64, "row of the training split that is removed"),
)

TEST_POINTS = _t(
    "test_points",
    "select/test_points.parquet — the test examples (influence.test_points, influence.seed) on "
    "which every variant's test-loss change and the influence prediction are measured.",
    ("position", _i32, "0..P−1"),
    ("test_index", _i64, "row of the test split"),
)

VARIANT_REMOVALS = _t(
    "variant_removals",
    "retrain/<variant>/removals.parquet — one row per removal: the retrained model's test loss.",
    ("variant", _str, "cold | warm | proximal | pbrf | linearized_pbrf"),
    ("removal_id", _i32, "removal set"),
    ("removed_indices", _ids, "training rows removed in this set"),
    ("base_test_loss", _f64, "L_test(θˢ)"),
    ("test_loss", _f64, "L_test(θ_variant)"),
    ("test_loss_change", _f64, "L_test(θ_variant) − L_test(θˢ)"),
    ("final_objective", _f64, "the variant's objective in its last epoch (or L-BFGS value)"),
)

VARIANT_HISTORY = _t(
    "variant_history",
    "retrain/<variant>/history.parquet — mean objective per epoch and removal (long format).",
    ("variant", _str, "the variant"),
    ("epoch", _i32, "epoch index within this retraining run, from 0"),
    ("removal_id", _i32, "removal set"),
    ("objective", _f64, "mean objective of that model in that epoch"),
)

INFLUENCE_REMOVALS = _t(
    "influence_removals",
    "influence/removals.parquet — the influence estimate per removal, ε = 1/N.",
    ("removal_id", _i32, "removal set"),
    ("removed_indices", _ids, "training rows removed in this set"),
    ("base_test_loss", _f64, "L_test(θˢ)"),
    ("predicted_test_loss_change", _f64, "ε ∇L_testᵀ (G + λI)⁻¹ g_z (Eq. 23)"),
    ("self_influence", _f64, "ε g_zᵀ (G + λI)⁻¹ g_z"),
    ("test_loss", _f64, "L_test(θ_IF), θ_IF = θˢ + ε (G + λI)⁻¹ g_z (Eq. 10)"),
    ("test_loss_change", _f64, "L_test(θ_IF) − L_test(θˢ)"),
)

SOLVER = _t(
    "solver",
    "influence/solver.parquet — one row describing the iHVP solve (null where not applicable).",
    ("solver", _str, "lissa | cg | exact"),
    ("curvature", _str, "gnh | hessian"),
    ("damping", _f64, "λ"),
    ("epsilon", _f64, "ε = 1/N"),
    ("depth", _i64, "LiSSA recursion depth T"),
    ("repeats", _i64, "LiSSA repeats R"),
    ("batch_size", _i64, "LiSSA minibatch (null: full data)"),
    ("scale", _f64, "LiSSA scale σ"),
    ("top_eigenvalue", _f64, "power-iteration estimate of λ_max (scale=auto)"),
    ("horizon", _f64, "LiSSA horizon T/σ"),
    ("iterations", _i64, "CG iterations"),
    ("max_residual", _f64, "CG's largest final residual"),
)

GAPS_PER_REMOVAL = _t(
    "gaps_per_removal",
    "aggregate/gaps_per_removal.parquet — output-space distance of each gap, per removal "
    "(Appendix E.2): E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training inputs.",
    ("gap", _str, "warm_start | proximity | non_convergence | linearization | solver"),
    ("removal_id", _i32, "removal set"),
    ("reference_a", _str, "source of θ_a"),
    ("reference_b", _str, "source of θ_b"),
    ("distance", _f64, "mean output distance over the training inputs"),
)

GAPS = _t(
    "gaps",
    "aggregate/gaps.parquet — Table 5: each gap as mean ± std over the M removals.",
    ("experiment", _str, "config name (e.g. the preset)"),
    ("gap", _str, "warm_start | proximity | non_convergence | linearization | solver"),
    ("reference_a", _str, "source of θ_a"),
    ("reference_b", _str, "source of θ_b"),
    ("mean", _f64, "mean over removals"),
    ("std", _f64, "sample standard deviation over removals (0 when M = 1)"),
    ("n", _i32, "number of removals"),
    (
        "output_scale",
        _f64,
        "E_x‖f(θˢ, x)‖ over the training inputs: the scale gaps are read against",
    ),
)

CORRELATIONS = _t(
    "correlations",
    "aggregate/correlations.parquet — Table 2: influence-predicted vs actual test-loss change.",
    ("experiment", _str, "config name"),
    ("reference", _str, "the variant whose actual test-loss changes are compared"),
    ("pearson", _f64, "Pearson correlation (NaN when either side is constant)"),
    ("spearman", _f64, "Spearman rank correlation"),
    ("n", _i32, "number of removals"),
)

TEST_LOSS_CHANGES = _t(
    "test_loss_changes",
    "aggregate/test_loss_changes.parquet — every source's test-loss change per removal (long).",
    ("removal_id", _i32, "removal set"),
    ("source", _str, "influence (the Eq. 23 prediction) or a variant (actual change)"),
    ("test_loss_change", _f64, "L_test change"),
)

HORIZONS = _t(
    "horizons",
    "aggregate/horizons.parquet — one row: the curvature horizons of LiSSA and the PBRF run "
    "(GUIDE §4); they should agree within a factor of 3.",
    ("lissa_depth", _i64, "T"),
    ("lissa_scale", _f64, "σ"),
    ("lissa_horizon", _f64, "T/σ (null for CG/exact)"),
    ("pbrf_lr", _f64, "η of the PBRF runs"),
    ("pbrf_steps", _i64, "S, optimizer steps of the PBRF runs"),
    ("pbrf_horizon", _f64, "η·S (null for Adam/L-BFGS)"),
    ("ratio", _f64, "max/min of the two horizons"),
    ("mismatch", _bool, "ratio > 3"),
    ("message", _str, "human-readable verdict"),
)

ALL_TABLES: tuple[TableSchema, ...] = (
    BASE_HISTORY,
    REMOVED,
    TEST_POINTS,
    VARIANT_REMOVALS,
    VARIANT_HISTORY,
    INFLUENCE_REMOVALS,
    SOLVER,
    GAPS_PER_REMOVAL,
    GAPS,
    CORRELATIONS,
    TEST_LOSS_CHANGES,
    HORIZONS,
)


def describe() -> str:
    """All schemas as Markdown (for documentation)."""
    lines = []
    for t in ALL_TABLES:
        lines += [f"### {t.name}", "", t.doc, "", "| column | type | meaning |", "|---|---|---|"]
        for f in t.schema:
            lines.append(f"| `{f.name}` | {f.type} | {f.metadata[b'doc'].decode()} |")
        lines.append("")
    return "\n".join(lines)
