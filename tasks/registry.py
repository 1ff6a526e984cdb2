"""The one registry of pipeline steps: what each step runs, reads, consumes and produces.

Everything else is derived from :data:`STEPS` — the concrete nodes of a run and their edges
(:mod:`tasks.engine.plan`), the artifacts' config stamps and cache keys, the run-directory layout, the
Prefect tasks and their ``wait_for`` edges (:mod:`flows.decomposition`) and the DVC stages
(``pbrf dvc`` writes ``dvc.yaml``; a test checks the committed file). Adding a step is one
:class:`Step` entry plus its function.

A step's ``reads`` are the config keys its own computation depends on (dotted paths into the
config; a section name means the whole section). What its inputs depend on is covered by the
inputs themselves: a node's config stamp hashes its own keys together with its upstream nodes'
stamps, so changing ``damping`` re-stamps the proximal, PBRF and influence nodes and what
follows them, never cold or warm start.

This module is plain Python (no torch): ``pbrf --help`` and ``pbrf dvc`` import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Params = Mapping[str, Any]  # a node's parameters, e.g. {"variant": "pbrf", "shard": 0}
Config = Mapping[str, Any]  # the config as a JSON-like dict (StudyConfig.model_dump)

VARIANTS = (
    "cold",
    "warm",
    "proximal",
    "pbrf",
    "linearized_pbrf",
    "pbrf_paper",
    "linearized_pbrf_paper",
    "two_stage",
)


@dataclass(frozen=True)
class Step:
    """One pipeline step.

    ``outputs`` maps artifact names to path templates under the run directory; a template's
    ``{placeholders}`` are filled from the node's parameters. ``inputs`` names artifacts of other
    steps; an input whose template has placeholders the node does not bind is expanded over
    every node of the producing step (the aggregate reads every variant and shard).
    """

    name: str
    function: str  # "module:function"
    doc: str
    outputs: Mapping[str, str]
    inputs: Callable[[Config, Params], tuple[str, ...]] | tuple[str, ...] = ()
    reads: Callable[[Config, Params], tuple[str, ...]] | tuple[str, ...] = ()
    instances: Callable[[Config], list[dict[str, Any]]] | None = None  # None: one node
    enabled: Callable[[Config], bool] = field(default=lambda cfg: True)
    # whether the node runs torch.func.jvp (forward-mode AD state is process-global: such nodes
    # take a lock in a thread pool, flows.prefect_tasks)
    forward_ad: Callable[[Config, Params], bool] = field(default=lambda cfg, params: False)
    metrics: tuple[str, ...] = ()  # outputs that are DVC metrics (git-tracked, cache: false)
    # modules the step loads by name (importlib), which imports alone do not reveal
    code: Callable[[Config, Params], tuple[str, ...]] | tuple[str, ...] = ()

    def code_for(self, cfg: Config, params: Params) -> tuple[str, ...]:
        return self.code(cfg, params) if callable(self.code) else self.code

    def reads_for(self, cfg: Config, params: Params) -> tuple[str, ...]:
        return self.reads(cfg, params) if callable(self.reads) else self.reads

    def inputs_for(self, cfg: Config, params: Params) -> tuple[str, ...]:
        return self.inputs(cfg, params) if callable(self.inputs) else self.inputs

    def nodes(self, cfg: Config) -> list[dict[str, Any]]:
        if not self.enabled(cfg):
            return []
        return [{}] if self.instances is None else self.instances(cfg)


# --------------------------------------------------------------------------- helpers


def get_key(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def lissa(cfg: Config) -> bool:
    return get_key(cfg, "influence.solver.name") == "lissa"


def matched(cfg: Config) -> bool:
    """The PBRF's horizon is derived from LiSSA's (``retrain.pbrf.horizon: matched``)."""
    return (
        get_key(cfg, "retrain.pbrf.horizon") == "matched"
        and get_key(cfg, "train.optimizer.name") in ("sgd", "momentum")
        and lissa(cfg)
    )


def scale_rule(cfg: Config) -> str | None:
    """How LiSSA's σ is set: ``"auto"`` (from the ``spectrum`` node's λ_max), ``"grid"`` (the
    influence node runs Appendix E.3's procedure and records σ in its ``solver`` table),
    ``"fixed"``; ``None`` when the solver is not LiSSA."""
    if not lissa(cfg):
        return None
    scale = get_key(cfg, "influence.solver.scale")
    return scale if scale in ("auto", "grid") else "fixed"


def scale_inputs(cfg: Config) -> tuple[str, ...]:
    """The artifact a node that needs LiSSA's σ reads it from."""
    return {"auto": ("spectrum",), "grid": ("solver",)}.get(scale_rule(cfg) or "", ())


def needs_spectrum(cfg: Config) -> bool:
    """λ_max of the curvature is needed: LiSSA's automatic scale, or a matched PBRF horizon
    (unless the influence node chooses σ from the grid)."""
    pbrf = {"pbrf", "linearized_pbrf"} & set(get_key(cfg, "retrain.variants"))
    derived = bool(pbrf and matched(cfg)) or _mislabel_matched(cfg)
    return scale_rule(cfg) == "auto" or (derived and scale_rule(cfg) != "grid")


def mislabel(cfg: Config) -> bool:
    """Mislabelled-example detection runs (``mislabel`` is set)."""
    return cfg.get("mislabel") is not None


def _mislabel_matched(cfg: Config) -> bool:
    """The N PBRFs of the detection study use the horizon-matched schedule."""
    return mislabel(cfg) and get_key(cfg, "mislabel.pbrf") == "matched" and matched(cfg)


def _variant_shards(cfg: Config) -> list[dict[str, Any]]:
    shards = int(get_key(cfg, "retrain.shards"))
    return [
        {"variant": v, "shard": s, "shards": shards}
        for v in get_key(cfg, "retrain.variants")
        for s in range(shards)
    ]


_LISSA_HORIZON = ("influence.solver.depth", "influence.solver.scale")
_SCALE = ("influence.solver.scale_factor",)


def _mlp_kernel(cfg: Config) -> bool:
    """``kernel: mlp``: an MLP's training steps and GNH products run as hand-written batched
    matrix products (pbrf.mlpkernel), with no forward-mode autodiff."""
    return get_key(cfg, "kernel") == "mlp"


def _retrain_forward_ad(cfg: Config, p: Params) -> bool:
    """The linearized PBRFs take jvps (Eq. 11), except through the MLP kernel."""
    return p["variant"] in ("linearized_pbrf", "linearized_pbrf_paper") and not _mlp_kernel(cfg)


def _influence_forward_ad(cfg: Config, p: Params) -> bool:
    """Gradients are reverse-mode; the curvature products take jvps, except LiSSA's GNH
    products through the MLP kernel (pbrf.influence: ``kernel``)."""
    gnh = get_key(cfg, "influence.curvature") == "gnh"
    return not (_mlp_kernel(cfg) and lissa(cfg) and gnh)


def _retrain_reads(cfg: Config, p: Params) -> tuple[str, ...]:
    v = p["variant"]
    if v in ("cold", "warm", "two_stage"):
        return ("retrain.epochs_fraction",)
    if v == "proximal":
        return ("retrain.epochs_fraction", "damping")
    if v in ("pbrf_paper", "linearized_pbrf_paper"):
        return ("retrain.epochs_fraction", "retrain.pbrf.paper_lr_factor", "damping")
    own: tuple[str, ...] = (
        "retrain.pbrf.horizon",
        "retrain.pbrf.lr_factor",
        "damping",
        "influence.solver.name",  # matched only to LiSSA
    )
    if matched(cfg):  # S from T/σ; σ = scale_factor·(λ_max + λ), from the grid, or given
        return own + _LISSA_HORIZON + (_SCALE if scale_rule(cfg) == "auto" else ())
    if get_key(cfg, "retrain.pbrf.epochs") is None:  # explicit, defaulting to K/2
        return (*own, "retrain.pbrf.epochs", "retrain.epochs_fraction")
    return (*own, "retrain.pbrf.epochs")


def _retrain_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    base = ("dataset", "theta_s", "removed")
    if p["variant"] == "cold":
        base += ("theta0", "orders")
    if p["variant"] in ("pbrf", "linearized_pbrf") and matched(cfg):
        base += scale_inputs(cfg)
    return base


def _influence_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    base = ("dataset", "theta_s", "removed", "test_points")
    return base + (("spectrum",) if scale_rule(cfg) == "auto" else ())


def _prepare_reads(cfg: Config, p: Params) -> tuple[str, ...]:
    corrupt = ("mislabel.fraction", "mislabel.seed") if mislabel(cfg) else ("mislabel",)  # None
    return ("data", *corrupt)


def _mislabel_shards(cfg: Config) -> list[dict[str, Any]]:
    shards = int(get_key(cfg, "mislabel.shards"))
    return [{"shard": s, "shards": shards} for s in range(shards)]


def _self_pbrf_reads(cfg: Config, p: Params) -> tuple[str, ...]:
    variant = "pbrf" if get_key(cfg, "mislabel.pbrf") == "matched" else "pbrf_paper"
    return ("mislabel.pbrf", "eval_dtype", *_retrain_reads(cfg, {"variant": variant}))


def _self_pbrf_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    return ("dataset", "theta_s", *(scale_inputs(cfg) if _mislabel_matched(cfg) else ()))


def _report_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    base = ("gaps", "correlations", "test_loss_changes", "horizons", "precision", "convergence")
    studies = ("mislabel_found", "mislabel_auc") if mislabel(cfg) else ()
    return (*base, "solver", *studies, *(("grades",) if grading(cfg) else ()))


def _aggregate_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    return (
        "dataset",
        "theta_s",
        "removed",
        "test_points",
        "variant_delta",
        "variant_removals",
        "variant_history",
        "influence_delta",
        "influence_removals",
        "solver",
    )


def grading(cfg: Config) -> bool:
    """Estimators are graded (``grade.estimators`` is not empty)."""
    return bool(get_key(cfg, "grade.estimators"))


# estimators whose curvature products use torch.func.jvp (serialized in threaded runs)
JVP_ESTIMATORS = frozenset({"exact", "cg", "lissa", "arnoldi", "trak"})
MISLABEL_ARTIFACT = "mislabel_auc"  # optional: the mislabel study's AUC (method, auc)


def _estimators(cfg: Config) -> list[dict[str, Any]]:
    return [{"estimator": name} for name in get_key(cfg, "grade.estimators")]


def _estimate_reads(cfg: Config, p: Params) -> tuple[str, ...]:
    own = (f"grade.estimators.{p['estimator']}", "damping", "influence.curvature")
    return own if p["estimator"] == "exact" else (*own, "dtype")  # exact: always float64


def estimator_module(name: str) -> str:
    """The module ``pbrf.estimators.registry`` imports for estimator ``name``."""
    return f"pbrf.estimators.{name}"


def _estimate_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    base = ("dataset", "theta_s", "removed", "test_points")
    return (*base, "base_checkpoints") if p["estimator"] == "tracin" else base


def _grade_inputs(cfg: Config, p: Params) -> tuple[str, ...]:
    base = ("test_loss_changes", "estimate_removals", "estimate_cost", "estimate_delta")
    mislabel = [s for s in STEPS.values() if MISLABEL_ARTIFACT in s.outputs and s.nodes(cfg)]
    return (*base, MISLABEL_ARTIFACT) if mislabel else base


# --------------------------------------------------------------------------- the registry

STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            name="prepare",
            function="tasks.steps.prepare:prepare",
            doc="split, standardize and store the data set",
            reads=_prepare_reads,
            outputs={"dataset": "prepare/dataset.pt"},
        ),
        Step(
            name="train_base",
            function="tasks.steps.train_base:train_base",
            doc="train θˢ from θ⁰ on all N examples, recording the batch order",
            reads=("model", "train", "loss", "dtype"),
            inputs=("dataset",),
            outputs={
                "theta0": "base/theta0.pt",
                "theta_s": "base/theta_s.pt",
                "orders": "base/orders.pt",
                "base_history": "base/history.parquet",
                "base_checkpoints": "base/checkpoints.pt",
            },
        ),
        Step(
            name="select",
            function="tasks.steps.selection:select",
            doc="draw the M removal sets and the test points",
            reads=("select",),
            inputs=("dataset",),
            outputs={
                "removed": "select/removed.parquet",
                "test_points": "select/test_points.parquet",
            },
        ),
        Step(
            name="spectrum",
            function="tasks.steps.spectrum:spectrum",
            doc="λ_max of the curvature at θˢ by power iteration (LiSSA's scale, PBRF horizon)",
            reads=lambda cfg, p: (
                "influence.curvature",
                *(("influence.solver.power_iters",) if lissa(cfg) else ()),
            ),
            inputs=("dataset", "theta_s"),
            enabled=needs_spectrum,
            forward_ad=lambda cfg, p: True,
            outputs={"spectrum": "spectrum/spectrum.parquet"},
        ),
        Step(
            name="influence",
            function="tasks.steps.influence:influence",
            doc="(C + λI)⁻¹ g_z for all removals, predicted test-loss changes, self-influence",
            reads=("influence", "damping", "eval_dtype"),
            inputs=_influence_inputs,
            forward_ad=_influence_forward_ad,
            outputs={
                "influence_delta": "influence/delta.pt",
                "influence_removals": "influence/removals.parquet",
                "solver": "influence/solver.parquet",
            },
        ),
        Step(
            name="retrain",
            function="tasks.steps.retrain:retrain",
            doc="train one variant's optima for a shard of the removals, as one vmapped run",
            reads=_retrain_reads,
            inputs=_retrain_inputs,
            instances=_variant_shards,
            forward_ad=_retrain_forward_ad,
            outputs={
                "variant_delta": "retrain/{variant}/shard-{shard}/delta.pt",
                "variant_removals": "retrain/{variant}/shard-{shard}/removals.parquet",
                "variant_history": "retrain/{variant}/shard-{shard}/history.parquet",
            },
        ),
        Step(
            name="self_influence",
            function="tasks.steps.mislabel:self_influence",
            doc="Figure 6: ε g_zᵀ(C + λI)⁻¹g_z for every training example z",
            reads=(
                "mislabel.solver",
                "mislabel.rhs_chunk",
                "influence.curvature",
                "damping",
                "eval_dtype",
            ),
            inputs=("dataset", "theta_s"),
            enabled=mislabel,
            forward_ad=lambda cfg, p: True,
            outputs={"mislabel_influence": "mislabel/influence.parquet"},
        ),
        Step(
            name="self_pbrf",
            function="tasks.steps.mislabel:self_pbrf",
            doc="Figure 6: one PBRF per training example (a shard), the change of its own loss",
            reads=_self_pbrf_reads,
            inputs=_self_pbrf_inputs,
            instances=_mislabel_shards,
            enabled=mislabel,
            outputs={"mislabel_pbrf": "mislabel/pbrf/shard-{shard}/scores.parquet"},
        ),
        Step(
            name="detection",
            function="tasks.steps.detection:detection",
            doc="Figure 6: corrupted examples found vs inspected (IF, PBRF, random), AUCs",
            reads=("name", "mislabel.inspect"),
            inputs=("dataset", "mislabel_influence", "mislabel_pbrf"),
            enabled=mislabel,
            outputs={
                "mislabel_curve": "mislabel/curve.parquet",
                "mislabel_found": "mislabel/found.parquet",
                "mislabel_auc": "mislabel/auc.parquet",
                "figure6": "mislabel/figure6_mislabel_detection.png",
            },
        ),
        Step(
            name="aggregate",
            function="tasks.steps.aggregate:aggregate",
            doc="gaps (Table 5), correlations (Table 2) with intervals, horizons, precision",
            reads=("name", "eval_dtype", "retrain.variants"),
            inputs=_aggregate_inputs,
            outputs={
                "gaps_per_removal": "aggregate/gaps_per_removal.parquet",
                "gaps": "aggregate/gaps.parquet",
                "correlations": "aggregate/correlations.parquet",
                "test_loss_changes": "aggregate/test_loss_changes.parquet",
                "horizons": "aggregate/horizons.parquet",
                "precision": "aggregate/precision.parquet",
                "convergence": "aggregate/convergence.parquet",
            },
        ),
        Step(
            name="estimate",
            function="tasks.steps.estimate:estimate",
            doc="one influence estimator's predicted test-loss changes, Δθ and cost",
            reads=_estimate_reads,
            inputs=_estimate_inputs,
            instances=_estimators,
            enabled=grading,
            forward_ad=lambda cfg, p: p["estimator"] in JVP_ESTIMATORS,
            code=lambda cfg, p: (estimator_module(p["estimator"]),),
            outputs={
                "estimate_removals": "estimate/{estimator}/removals.parquet",
                "estimate_delta": "estimate/{estimator}/delta.pt",
                "estimate_cost": "estimate/{estimator}/cost.parquet",
            },
        ),
        Step(
            name="grade",
            function="tasks.steps.grade:grade",
            doc="every estimator against the PBRF, linearized PBRF, exact solve and LOO",
            reads=("name", "grade.references", "grade.rank_by"),
            inputs=_grade_inputs,
            enabled=grading,
            outputs={"grades": "grade/grades.parquet", "grade_ranking": "grade/ranking.png"},
        ),
        Step(
            name="report",
            function="tasks.reports.report:report",
            doc="report.md, figures, metrics.json and plot CSVs",
            inputs=_report_inputs,
            outputs={
                "figure1": "report/figure1_test_loss_scatter.png",
                "figure4": "report/figure4_gaps.png",
                "changes_csv": "report/test_loss_changes.csv",
                "gaps_csv": "report/gaps.csv",
                "metrics": "report/metrics.json",
                "report_md": "report/report.md",
            },
            metrics=("metrics",),
        ),
    )
}

STEP_NAMES: tuple[str, ...] = tuple(STEPS)


def producer(artifact: str) -> Step:
    """The step that writes ``artifact``."""
    for step in STEPS.values():
        if artifact in step.outputs:
            return step
    raise KeyError(f"no step produces artifact {artifact!r}")
