"""Every Parquet table the pipeline writes: its columns, types and meaning (one place).

All tables carry key/value metadata in the Parquet footer:

* ``pbrf.schema`` — the table's name below, ``pbrf.schema_version`` — :data:`SCHEMA_VERSION`;
* ``pbrf.step`` — the step that wrote it, ``pbrf.stamp`` — the config stamp of the node that
  wrote it (:mod:`tasks.engine.plan`), checked by :func:`tasks.engine.artifacts.read_table`;
* ``pbrf.env`` — thread count, device and torch version of the run that wrote it.

Artifacts are deterministic functions of their inputs (no timestamps or timings), so a
recomputation with the same config and code reproduces the same bytes on the same machine and
does not invalidate downstream steps (Prefect cache keys and DVC both hash input bytes).

Conventions: ``removal_id`` numbers the M removal sets ``0..M−1`` in the order of
``select/removed.parquet``; a "test-loss change" is ``L_test(θ) − L_test(θˢ)``, the mean loss on the
selected test points (no regularizer), so positive means removal hurt; ``variant`` is one of
``cold, warm, proximal, pbrf, linearized_pbrf, pbrf_paper`` (or the opt-in ``two_stage``) and
``source`` additionally ``influence``. Responses are stored as displacements Δ = θ − θˢ (``delta.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "2"


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
    "select/removed.parquet — the M removal sets (select.draws: disjoint or independent) with "
    "select.seed; group_size (or round(fraction·N)) rows per removal.",
    ("removal_id", _i32, "removal set 0..M−1"),
    ("position", _i32, "position within the set, 0..group_size−1"),
    ("train_index", _i64, "row of the training split that is removed"),
)

TEST_POINTS = _t(
    "test_points",
    "select/test_points.parquet — the test examples (select.test_points, select.seed) on "
    "which every variant's test-loss change and the influence prediction are measured.",
    ("position", _i32, "0..P−1"),
    ("test_index", _i64, "row of the test split"),
)

VARIANT_REMOVALS = _t(
    "variant_removals",
    "retrain/<variant>/shard-<i>/removals.parquet — one row per removal: how its optimum was "
    "trained and whether training had settled.",
    ("variant", _str, "cold | warm | proximal | pbrf | linearized_pbrf | pbrf_paper"),
    ("removal_id", _i32, "removal set"),
    ("removed_indices", _ids, "training rows removed in this set"),
    ("epochs", _i64, "epochs run (cold: K + K/2; L-BFGS: the iteration cap)"),
    ("lr", _f64, "learning rate (null for L-BFGS)"),
    ("final_objective", _f64, "the variant's mean objective in its last epoch (or L-BFGS value)"),
    (
        "tail_decrease",
        _f64,
        "share of the objective's decrease from θˢ made in the last 10 % of the epochs, from the "
        "objective over one fixed pass of batches at the start, at 90 % and at the end",
    ),
    ("still_decreasing", _bool, "tail_decrease > 5 %: the objective was still falling"),
    ("converged", _bool, "L-BFGS reached its gradient tolerance (null for SGD/Adam)"),
    ("grad_norm", _f64, "L-BFGS final ‖∇‖∞ (null for SGD/Adam)"),
)

VARIANT_HISTORY = _t(
    "variant_history",
    "retrain/<variant>/shard-<i>/history.parquet — mean objective per epoch and removal (long).",
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
    ("predicted_test_loss_change", _f64, "ε ∇L_testᵀ (C + λI)⁻¹ g_z (Eq. 23), in eval_dtype"),
    ("self_influence", _f64, "ε g_zᵀ (C + λI)⁻¹ g_z"),
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
    ("top_eigenvalue", _f64, "λ_max of the curvature (power iteration)"),
    ("horizon", _f64, "LiSSA horizon T/σ"),
    ("iterations", _i64, "CG iterations"),
    ("max_residual", _f64, "CG's largest final relative residual"),
    ("method", _str, "exact solve: the factorization used"),
    ("converged", _bool, "the solver met its tolerance (CG), or its factorization held (exact)"),
    ("warnings", _str, "the solver's warnings, '; '-separated (empty when none)"),
    ("scale_trials", _str, "LiSSA scale='grid': every σ tried, '; '-separated (else null)"),
)

SPECTRUM = _t(
    "spectrum",
    "spectrum/spectrum.parquet — one row: the largest eigenvalue of the undamped curvature at θˢ.",
    ("curvature", _str, "gnh | hessian"),
    ("top_eigenvalue", _f64, "λ_max by power iteration"),
    ("iterations", _i64, "power iterations run"),
    ("converged", _bool, "the Rayleigh quotient settled before the iteration cap"),
)

GAPS_PER_REMOVAL = _t(
    "gaps_per_removal",
    "aggregate/gaps_per_removal.parquet — output-space distance of each gap, per removal "
    "(Appendix E.2): E_x‖f(θ_a, x) − f(θ_b, x)‖ over the training inputs, in eval_dtype.",
    ("gap", _str, "warm_start | proximity | non_convergence | linearization | solver"),
    ("removal_id", _i32, "removal set"),
    ("reference_a", _str, "source of θ_a"),
    ("reference_b", _str, "source of θ_b"),
    ("distance", _f64, "mean output distance over the training inputs"),
)

GAPS = _t(
    "gaps",
    "aggregate/gaps.parquet — Table 5: each gap as mean ± std over the M removals, with a "
    "bootstrap (over removals) 95 % interval of the mean.",
    ("experiment", _str, "config name (e.g. the preset)"),
    ("gap", _str, "warm_start | proximity | non_convergence | linearization | solver"),
    ("reference_a", _str, "source of θ_a"),
    ("reference_b", _str, "source of θ_b"),
    ("mean", _f64, "mean over removals"),
    ("std", _f64, "sample standard deviation over removals (0 when M = 1)"),
    ("ci_low", _f64, "95 % bootstrap interval of the mean: lower end"),
    ("ci_high", _f64, "95 % bootstrap interval of the mean: upper end"),
    ("n", _i32, "number of removals"),
    (
        "output_scale",
        _f64,
        "E_x‖f(θˢ, x)‖ over the training inputs: the scale gaps are read against",
    ),
)

CORRELATIONS = _t(
    "correlations",
    "aggregate/correlations.parquet — Table 2: influence-predicted vs actual test-loss change, "
    "with bootstrap (over removals) 95 % intervals and the most influential removal.",
    ("experiment", _str, "config name"),
    ("reference", _str, "the variant (or influence_params) whose actual changes are compared"),
    ("pearson", _f64, "Pearson correlation (NaN when either side is constant)"),
    ("pearson_low", _f64, "95 % bootstrap interval: lower end"),
    ("pearson_high", _f64, "95 % bootstrap interval: upper end"),
    ("spearman", _f64, "Spearman rank correlation"),
    ("spearman_low", _f64, "95 % bootstrap interval: lower end"),
    ("spearman_high", _f64, "95 % bootstrap interval: upper end"),
    ("pearson_jackknife_removal", _i32, "the removal whose omission changes Pearson most"),
    ("pearson_jackknife_change", _f64, "Pearson without that removal minus Pearson with it"),
    ("spearman_jackknife_removal", _i32, "the removal whose omission changes Spearman most"),
    ("spearman_jackknife_change", _f64, "Spearman without that removal minus with it"),
    ("n", _i32, "number of removals"),
    ("at_rounding_floor", _bool, "the compared changes are within 10 rounding units of the loss"),
)

TEST_LOSS_CHANGES = _t(
    "test_loss_changes",
    "aggregate/test_loss_changes.parquet — every source's test-loss change per removal (long), "
    "evaluated in eval_dtype at θˢ + Δ.",
    ("removal_id", _i32, "removal set"),
    (
        "source",
        _str,
        "influence (Eq. 23 prediction), influence_params (L at θˢ + Δ_IF) or a variant",
    ),
    ("test_loss_change", _f64, "L_test(θˢ + Δ) − L_test(θˢ), mean over the test points"),
)

HORIZONS = _t(
    "horizons",
    "aggregate/horizons.parquet — one row per PBRF variant: its horizon η·S/(1−μ) against LiSSA's "
    "T/σ (they should agree within a factor of 3 for the matched PBRF).",
    ("variant", _str, "pbrf | linearized_pbrf | pbrf_paper"),
    ("setting", _str, "matched | explicit | paper"),
    ("lr", _f64, "η of the run"),
    ("epochs", _i64, "epochs from θˢ"),
    ("steps", _i64, "S, optimizer steps"),
    ("horizon", _f64, "η·S/(1−μ) (null for Adam/L-BFGS)"),
    ("lissa_horizon", _f64, "T/σ (null for CG/exact)"),
    ("ratio", _f64, "max/min of the two horizons"),
    ("mismatch", _bool, "ratio > 3"),
    ("message", _str, "human-readable verdict"),
)

PRECISION = _t(
    "precision",
    "aggregate/precision.parquet — how far each response stands above rounding (one row per "
    "source).",
    ("source", _str, "a variant or influence"),
    ("train_dtype", _str, "dtype the response was trained/solved in"),
    ("min_response_ulps", _f64, "smallest ‖Δ‖ / ‖ulp(θˢ)‖ over removals"),
    ("max_vanishing_fraction", _f64, "largest share of coordinates with |Δᵢ| < ulp(θˢᵢ)/2"),
    ("median_loss_change_ulps", _f64, "median |ΔL_test| in units of ulp(L_test) in train_dtype"),
    ("at_rounding_floor", _bool, "median_loss_change_ulps < 10"),
)

CONVERGENCE = _t(
    "convergence",
    "aggregate/convergence.parquet — one row per trained variant and for the solver: did it "
    "settle?",
    ("source", _str, "a variant, or 'solver'"),
    ("epochs", _i64, "epochs (variants) or iterations (solver)"),
    ("max_tail_decrease", _f64, "largest share of the decrease in the last 10 % of epochs"),
    ("still_decreasing", _i32, "removals whose objective was still falling"),
    ("unconverged", _i32, "removals (L-BFGS) or right-hand sides (solver) not converged"),
    ("threads", _i32, "torch intra-op threads of the run that trained it"),
    ("device", _str, "device it ran on"),
    ("message", _str, "warning text, empty when settled"),
)

ESTIMATE_REMOVALS = _t(
    "estimate_removals",
    "estimate/<estimator>/removals.parquet — one influence estimator's answer per removal "
    "(pbrf.estimators conventions: ε = 1/N, positive = removal increases the test loss).",
    ("removal_id", _i32, "removal set"),
    ("removed_indices", _ids, "training rows removed in this set"),
    (
        "predicted_test_loss_change",
        _f64,
        "ΔL of Eq. 23 (a ranking score with the same sign when the estimator is not calibrated)",
    ),
    ("self_influence", _f64, "ε g_Sᵀ (G + λI)⁻¹ g_S or the estimator's analogue (null: none)"),
)

ESTIMATE_COST = _t(
    "estimate_cost",
    "estimate/<estimator>/cost.parquet — one row: what the estimator cost and how it ended. "
    "Unlike every other table it holds measurements (wall time, memory, load), so it differs "
    "between identical runs.",
    ("estimator", _str, "registry name (pbrf.estimators)"),
    ("settings", _str, "the estimator's settings, JSON"),
    ("dtype", _str, "precision it ran in (the exact reference always runs in float64)"),
    ("calibrated", _bool, "predictions are in test-loss units (false: a ranking score)"),
    ("has_response", _bool, "the estimator defines a parameter response Δθ (delta.pt)"),
    ("wall_time_s", _f64, "wall time of the estimator call"),
    ("peak_memory_mb", _f64, "peak memory above the call's start (see memory_method)"),
    ("memory_method", _str, "sampled_rss (CPU) | cuda_max_memory_allocated | null"),
    ("load_average", _f64, "1-minute load average of the machine when the call ended"),
    ("threads", _i32, "torch intra-op threads"),
    ("device", _str, "device it ran on"),
    ("converged", _bool, "the estimator reported no convergence problem"),
    ("failed", _bool, "the estimator raised a known failure; its predictions are NaN"),
    ("message", _str, "warnings or the failure, '; '-separated (empty when none)"),
    ("info", _str, "the estimator's own record (iterations, rank, ...), JSON"),
)

GRADES = _t(
    "grades",
    "grade/grades.parquet — every estimator scored against every reference over the M removals: "
    "Pearson and Spearman with 95 % bootstrap intervals, its cost, and its mislabel-detection "
    "AUC where that study ran.",
    ("experiment", _str, "config name"),
    ("estimator", _str, "registry name (pbrf.estimators)"),
    ("reference", _str, "pbrf | pbrf_paper | linearized_pbrf | exact | cold | warm | proximal"),
    ("pearson", _f64, "Pearson correlation of predicted and reference test-loss changes"),
    ("pearson_low", _f64, "95 % bootstrap interval: lower end"),
    ("pearson_high", _f64, "95 % bootstrap interval: upper end"),
    ("spearman", _f64, "Spearman rank correlation"),
    ("spearman_low", _f64, "95 % bootstrap interval: lower end"),
    ("spearman_high", _f64, "95 % bootstrap interval: upper end"),
    ("n", _i32, "number of removals"),
    ("rank", _i32, "the estimator's rank by Spearman against grade.rank_by (1 = best)"),
    ("calibrated", _bool, "predictions are in test-loss units (false: a ranking score)"),
    (
        "response_rel_error",
        _f64,
        "‖Δθ − Δθ_exact‖ / ‖Δθ_exact‖ over all removals (null: no Δθ or no exact reference)",
    ),
    ("wall_time_s", _f64, "wall time of the estimator call"),
    ("peak_memory_mb", _f64, "peak memory above the call's start"),
    ("load_average", _f64, "1-minute load average when the call ended (contention)"),
    ("dtype", _str, "precision the estimator ran in"),
    (
        "mislabel_auc",
        _f64,
        "the mislabel study's detection AUC with this estimator's solver (null: not run here)",
    ),
    ("failed", _bool, "the estimator failed; its correlations are NaN"),
    ("message", _str, "the estimator's warnings or failure"),
)

SWEEP = _t(
    "sweep",
    "<sweep>/sweep/table.parquet — one row per grid point and quantity (tidy): each gap of "
    "Table 5 and each influence correlation of Table 2 against the swept value(s).",
    ("sweep", _str, "sweep name, e.g. fig5-damping-smoke"),
    ("point", _str, "point id (its directory under points/)"),
    ("key", _str, "first swept config key"),
    ("value", _f64, "its value at this point"),
    ("key2", _str, "second swept key (null for a one-key sweep)"),
    ("value2", _f64, "its value (null for a one-key sweep)"),
    ("lr", _f64, "the point's base learning rate (null without one: L-BFGS)"),
    ("quantity", _str, "gap | pearson | spearman"),
    ("term", _str, "the gap (warm_start … solver), or the correlation's reference variant"),
    ("estimate", _f64, "gap: mean over removals; correlation: over removals"),
    ("std", _f64, "gap: sample std over removals (null for correlations)"),
    ("low", _f64, "95 % bootstrap interval (over removals): lower end"),
    ("high", _f64, "95 % bootstrap interval: upper end"),
    ("n", _i32, "removal sets M"),
    ("removal_size", _i64, "training examples per removal set"),
    ("output_scale", _f64, "E_x‖f(θˢ, x)‖ over the training inputs"),
    ("pbrf_horizon", _f64, "η·S/(1−μ) of the PBRF (null if not trained with SGD)"),
    ("lissa_horizon", _f64, "T/σ of LiSSA (null for CG/exact)"),
    ("horizon_ratio", _f64, "pbrf_horizon / lissa_horizon (1 = matched)"),
    ("warnings", _i32, "convergence, horizon and precision warnings of the point's run"),
)

ALL_TABLES: tuple[TableSchema, ...] = (
    BASE_HISTORY,
    REMOVED,
    TEST_POINTS,
    SPECTRUM,
    VARIANT_REMOVALS,
    VARIANT_HISTORY,
    INFLUENCE_REMOVALS,
    SOLVER,
    GAPS_PER_REMOVAL,
    GAPS,
    CORRELATIONS,
    TEST_LOSS_CHANGES,
    HORIZONS,
    PRECISION,
    CONVERGENCE,
    ESTIMATE_REMOVALS,
    ESTIMATE_COST,
    GRADES,
    SWEEP,
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


# --------------------------------------------------------------------------- mislabel detection
# (Appendix F.3, Figure 6; run when ``mislabel`` is set)

MISLABEL_INFLUENCE = _t(
    "mislabel_influence",
    "mislabel/influence.parquet — self-influence of every training example under influence "
    "functions, ε = 1/N, on the corrupted labels.",
    ("train_index", _i64, "row of the training split"),
    ("corrupted", _bool, "its label was corrupted"),
    ("self_influence", _f64, "ε g_zᵀ (C + λI)⁻¹ g_z (float64)"),
    ("solver_converged", _bool, "the solve of this example's chunk met its tolerance"),
)

MISLABEL_PBRF = _t(
    "mislabel_pbrf",
    "mislabel/pbrf/shard-<i>/scores.parquet — one PBRF (Eq. 8) per training example of the "
    "shard, and the change of that example's own loss, evaluated in eval_dtype.",
    ("train_index", _i64, "row of the training split (the removed example)"),
    ("corrupted", _bool, "its label was corrupted"),
    ("loss_before", _f64, "ℓ_z(θˢ)"),
    ("loss_after", _f64, "ℓ_z(θˢ + Δ_z), Δ_z the PBRF optimum that removes z"),
    ("self_influence", _f64, "loss_after − loss_before"),
    ("tail_decrease", _f64, "share of the PBRF objective's decrease made in the last 10 %"),
)

MISLABEL_CURVE = _t(
    "mislabel_curve",
    "mislabel/curve.parquet — the detection curve: share of corrupted examples found after "
    "inspecting the k highest-scoring examples, k = 0..N (random: its expected value k/N).",
    ("method", _str, "influence | pbrf | random"),
    ("examples", _i64, "k, examples inspected"),
    ("inspected", _f64, "k/N"),
    ("found", _f64, "share of the corrupted examples among the k inspected"),
)

MISLABEL_FOUND = _t(
    "mislabel_found",
    "mislabel/found.parquet — share of corrupted examples found at each mislabel.inspect "
    "fraction; for random, the hypergeometric mean and exact 95 % interval.",
    ("method", _str, "influence | pbrf | random"),
    ("inspected", _f64, "fraction of the training set inspected"),
    ("examples", _i64, "round(inspected·N)"),
    ("found", _f64, "share of the corrupted examples found"),
    ("low", _f64, "random: 2.5 % quantile (null otherwise)"),
    ("high", _f64, "random: 97.5 % quantile (null otherwise)"),
)

MISLABEL_AUC = _t(
    "mislabel_auc",
    "mislabel/auc.parquet — area under each detection curve (mean share found over budgets "
    "k = 1..N); for random, its exact mean (N + 1)/(2N) and a normal 95 % interval from the "
    "closed-form variance (N + 1)(N − C)/(12N²C).",
    ("method", _str, "influence | pbrf | random"),
    ("auc", _f64, "area under the detection curve"),
    ("low", _f64, "random: 95 % interval, lower end (null otherwise)"),
    ("high", _f64, "random: 95 % interval, upper end (null otherwise)"),
    ("n", _i64, "N, training examples"),
    ("corrupted", _i64, "C, corrupted examples"),
    ("note", _str, "solver or training warnings behind this ranking ('' when none)"),
)

ALL_TABLES = (
    *ALL_TABLES,
    MISLABEL_INFLUENCE,
    MISLABEL_PBRF,
    MISLABEL_CURVE,
    MISLABEL_FOUND,
    MISLABEL_AUC,
)
