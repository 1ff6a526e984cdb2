"""The study configuration: a typed contract that rejects what it would ignore.

A :class:`StudyConfig` fully determines one decomposition study (Section 6, Appendix E): data,
network, base training, which examples are removed, how the five optima of Table 1 are trained
and how the influence estimate is computed. Every section is a frozen pydantic model that forbids
unknown fields; settings that only exist for some choices are modelled as discriminated unions
(the optimizer by ``train.optimizer.name``, the network by ``model.name``, the solver by
``influence.solver.name``), so ``momentum`` under plain SGD, or a LeNet option on an MLP, is an
error naming the field instead of a silently ignored value. Cross-section checks (a network that
cannot read the data, a loss that does not fit the task, more removals than training examples,
a horizon-matched PBRF without a horizon to match) fail at validation time too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pbrf.data.config import DataConfig
from pbrf.models import MODEL_INPUTS, MODEL_OPTIONS, parameter_count
from pbrf.solvers.settings import ExactSettings, LissaSettings, SolverSettings
from pbrf.study.grading import GradeConfig, check_grade
from pbrf.variants import DEFAULT_VARIANTS, PAPER_VARIANTS, VARIANTS  # noqa: F401

Variant = Literal[
    "cold",
    "warm",
    "proximal",
    "pbrf",
    "linearized_pbrf",
    "pbrf_paper",
    "linearized_pbrf_paper",
    "two_stage",
]
# the six variants a study trains unless retrain.variants says otherwise
# the variants of Table 1, in the order of the decomposition chain
CHAIN: tuple[str, ...] = ("cold", "warm", "proximal", "pbrf", "linearized_pbrf")

LOSS_TASKS: dict[str, frozenset[str]] = {
    "cross_entropy": frozenset({"multiclass", "language_model"}),
    "binary_cross_entropy": frozenset({"binary", "reconstruction"}),
    "squared_error": frozenset({"regression", "reconstruction", "binary", "multiclass"}),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- optimizers


class _Scheduled(_Strict):
    lr: float = Field(0.1, gt=0.0, description="learning rate η")
    lr_milestones: tuple[int, ...] = Field(
        (), description="epochs at which the learning rate is multiplied by lr_gamma"
    )
    lr_gamma: float = Field(1.0, gt=0.0, description="step-decay factor")

    @field_validator("lr_milestones")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in v) or list(v) != sorted(set(v)):
            raise ValueError(f"must be strictly increasing positive epochs, got {list(v)}")
        return v


class SGD(_Scheduled):
    """Plain stochastic gradient descent."""

    name: Literal["sgd"] = "sgd"


class Momentum(_Scheduled):
    """SGD with heavy-ball momentum (torch.optim.SGD convention v ← μv + g)."""

    name: Literal["momentum"] = "momentum"
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="μ")


class Adam(_Scheduled):
    """Adam with bias correction."""

    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="learning rate η")
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)


class LBFGS(_Strict):
    """Full-batch L-BFGS with Armijo backtracking (no learning rate)."""

    name: Literal["lbfgs"] = "lbfgs"
    tol: float = Field(1e-10, gt=0.0, description="stop when ‖∇‖_∞ ≤ tol")
    history: int = Field(20, ge=1, description="curvature pairs kept")


Optimizer = Annotated[SGD | Momentum | Adam | LBFGS, Field(discriminator="name")]

ModelConfig = Annotated[
    Union[tuple(MODEL_OPTIONS.values())],  # noqa: UP007 - a union built from the registry
    Field(discriminator="name"),
]


def _named(value: Any) -> Any:
    """Let ``optimizer: adam`` (or ``--set train.optimizer=adam``) mean ``{name: adam}``."""
    return {"name": value} if isinstance(value, str) else value


# --------------------------------------------------------------------------- sections


class TrainConfig(_Strict):
    """Base training of θˢ from θ⁰ (Appendix E.2: K epochs on all N examples)."""

    optimizer: Optimizer = Field(default_factory=SGD)
    epochs: int = Field(100, ge=1, description="K; for L-BFGS the maximum number of iterations")
    batch_size: int | None = Field(128, ge=1, description="minibatch size; null = full batch")
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 strength w, folded into the loss as (w/2)‖θ‖²"
    )
    seed: int = Field(0, ge=0, description="seed of the batch order")
    checkpoints: int = Field(
        0, ge=0, description="TracIn checkpoints of θ saved along base training (0: none)"
    )

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_by_name(cls, v: Any) -> Any:
        return _named(v)

    @model_validator(mode="after")
    def _lbfgs_is_full_batch(self) -> TrainConfig:
        if self.optimizer.name == "lbfgs" and self.batch_size is not None:
            raise ValueError(
                "batch_size: L-BFGS minimizes the full-batch objective; set batch_size to null"
            )
        if self.checkpoints > self.epochs:
            raise ValueError(
                f"checkpoints ({self.checkpoints}) exceeds epochs ({self.epochs}): TracIn takes "
                "at most one checkpoint per epoch"
            )
        if self.checkpoints and self.optimizer.name not in ("sgd", "momentum"):
            raise ValueError(
                f"checkpoints: TracIn's checkpoints need a fixed SGD step (sgd or momentum), "
                f"but train.optimizer.name={self.optimizer.name}; set checkpoints to 0"
            )
        return self


class SelectConfig(_Strict):
    """Which training examples are removed and which test points measure the effect."""

    num_removals: int = Field(20, ge=1, description="M, removal sets (paper: 20)")
    group_size: int = Field(1, ge=1, description="training examples removed together per set")
    test_points: int = Field(100, ge=1, description="test examples whose mean loss is tracked")
    seed: int = Field(0, ge=0, description="seed of the removals and of the test points")
    fraction: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="remove round(fraction·N) training examples per set instead of group_size",
    )
    draws: Literal["disjoint", "independent"] = Field(
        "disjoint",
        description="disjoint: no example in two sets (M × size ≤ N); independent: each set its "
        "own draw without replacement (sets may overlap)",
    )

    @model_validator(mode="after")
    def _one_size(self) -> SelectConfig:
        if self.fraction is not None and self.group_size != 1:
            raise ValueError("set either select.fraction or select.group_size, not both")
        return self

    def size(self, n_train: int) -> int:
        """Examples per removal set: ``group_size``, or ``round(fraction·N)`` clamped to 1..N−1."""
        if self.fraction is None:
            return self.group_size
        return min(max(1, round(self.fraction * n_train)), n_train - 1)


class PBRFConfig(_Strict):
    """How the PBRF and linearized PBRF (Eq. 8, 11) are trained.

    ``horizon="matched"`` trains them for as many steps S as make η·S equal LiSSA's horizon T/σ
    (so influence and PBRF resolve the same curvature directions; ``docs/method.md``);
    ``"explicit"`` uses ``epochs`` (default: the proximal objectives' K/2).
    The paper's own setting (K/2 epochs at lr × ``paper_lr_factor``) always runs as the
    ``pbrf_paper`` variant, so both appear side by side.
    """

    horizon: Literal["matched", "explicit"] = "matched"
    lr_factor: float = Field(1.0, gt=0.0, description="PBRF learning rate = train lr × this")
    epochs: int | None = Field(None, ge=1, description="explicit horizon: PBRF epochs")
    paper_lr_factor: float = Field(
        0.1, gt=0.0, description="pbrf_paper: learning rate = train lr × this (paper: 1/10)"
    )

    @model_validator(mode="after")
    def _epochs_only_when_explicit(self) -> PBRFConfig:
        if self.horizon == "matched" and self.epochs is not None:
            raise ValueError(
                "epochs: a matched horizon derives the PBRF's epochs from LiSSA's T/σ; "
                "set horizon to 'explicit' to choose them"
            )
        return self


class RetrainConfig(_Strict):
    """The optima of Table 1 (Appendix E.2), each trained for all M removals at once."""

    variants: tuple[Variant, ...] = Field(DEFAULT_VARIANTS, description="which optima to train")
    epochs_fraction: float = Field(
        0.5, gt=0.0, description="retraining epochs as a fraction of K (paper: K/2)"
    )
    pbrf: PBRFConfig = Field(default_factory=PBRFConfig)
    shards: int = Field(1, ge=1, description="split each variant's M removals into this many tasks")

    @field_validator("variants")
    @classmethod
    def _nonempty_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("an empty study: list at least one variant")
        if len(set(v)) != len(v):
            raise ValueError(f"variants repeat: {list(v)}")
        return tuple(x for x in VARIANTS if x in v)


class InfluenceConfig(_Strict):
    """The influence estimate at θˢ (Eq. 10, 23) and its iHVP solver (Appendix D)."""

    curvature: Literal["gnh", "hessian"] = Field(
        "gnh", description="Gauss-Newton Hessian (Table 5) or the true Hessian (Table 4)"
    )
    solver: SolverSettings = Field(default_factory=LissaSettings)

    @field_validator("solver", mode="before")
    @classmethod
    def _solver_by_name(cls, v: Any) -> Any:
        return _named(v)


class MislabelConfig(_Strict):
    """Mislabelled-example detection (Appendix F.3, Figure 6): corrupt labels, rank every
    training example by its self-influence under influence functions and under the PBRF.

    ``pbrf="paper"`` trains each example's PBRF with the paper's setting (K/2 epochs at
    lr × ``retrain.pbrf.paper_lr_factor``), ``"matched"`` with the decomposition's PBRF schedule
    (``retrain.pbrf``: LiSSA's horizon, or explicit epochs). Influence solves all N gradients
    with ``solver`` (default: the float64 exact solve), ``rhs_chunk`` at a time.
    """

    fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="share of training labels replaced by another class"
    )
    seed: int = Field(0, ge=0, description="seed of which rows are corrupted and their labels")
    solver: SolverSettings = Field(
        default_factory=ExactSettings, description="iHVP solver of the N self-influences"
    )
    rhs_chunk: int | None = Field(
        None, ge=1, description="training gradients per solve (None: all N at once)"
    )
    pbrf: Literal["paper", "matched"] = Field(
        "paper", description="schedule of the N PBRFs: the paper's, or retrain.pbrf's"
    )
    shards: int = Field(1, ge=1, description="split the N PBRFs into this many nodes")
    inspect: tuple[float, ...] = Field(
        (0.1, 0.2, 0.3), description="inspected fractions reported in the table"
    )

    @field_validator("solver", mode="before")
    @classmethod
    def _solver_by_name(cls, v: Any) -> Any:
        return _named(v)

    @field_validator("inspect")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0.0 < f <= 1.0 for f in v) or list(v) != sorted(set(v)):
            raise ValueError(f"must be increasing fractions in (0, 1], got {list(v)}")
        return v


class StudyConfig(_Strict):
    """Everything one decomposition study needs (Section 6, Appendix E)."""

    name: str = Field("study", description="experiment name shown in tables and reports")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=lambda: MODEL_OPTIONS["mlp"]())
    train: TrainConfig = Field(default_factory=TrainConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    influence: InfluenceConfig = Field(default_factory=InfluenceConfig)
    loss: Literal["auto", "squared_error", "cross_entropy", "binary_cross_entropy"] = "auto"
    damping: float = Field(1e-3, gt=0.0, description="λ of the proximal terms and of the iHVP")
    dtype: Literal["float32", "float64"] = Field("float32", description="training precision")
    eval_dtype: Literal["float32", "float64"] = Field(
        "float64", description="precision of test losses and output distances"
    )
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps")
    kernel: Literal["auto", "reference", "vmap", "loop", "mlp"] = Field(
        "auto",
        description="training step (pbrf.kernels): auto, reference, vmap, loop, or mlp (an "
        "MLP's batched matrix products); every kernel reaches the same optima to rounding",
    )
    mislabel: MislabelConfig | None = Field(
        None, description="mislabelled-example detection (Figure 6); null: not run"
    )
    grade: GradeConfig = Field(
        default_factory=GradeConfig, description="influence estimators graded against the PBRF"
    )

    @field_validator("model", mode="before")
    @classmethod
    def _model_by_name(cls, v: Any) -> Any:
        return _named(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        facts = self.data.signature()
        self._check_model(facts)
        loss = self.loss_name(facts.default_loss)
        if facts.task not in LOSS_TASKS[loss]:
            raise ValueError(
                f"loss: {loss} does not fit data.name={self.data.name} (a {facts.task} task)"
            )
        n_train = self.data.n_train()
        size = self.select.size(n_train)
        if self.select.draws == "independent" and size >= n_train:
            raise ValueError(
                f"select.group_size: a set of {size} removes all {n_train} training examples "
                f"of data.name={self.data.name}"
            )
        need = self.select.num_removals * size
        if self.select.draws == "disjoint" and need > n_train:
            what = "select.group_size" if self.select.fraction is None else "select.fraction·N"
            raise ValueError(
                f"select.num_removals × {what} = {need} exceeds the {n_train} training "
                f"examples of data.name={self.data.name}; select.draws='independent' lets the "
                "sets overlap"
            )
        if self.retrain.shards > self.select.num_removals:
            raise ValueError(
                f"retrain.shards ({self.retrain.shards}) exceeds select.num_removals "
                f"({self.select.num_removals})"
            )
        self._check_horizon()
        self._check_mislabel(facts, n_train)
        check_grade(self)
        return self

    def _check_mislabel(self, facts: Any, n_train: int) -> None:
        ml = self.mislabel
        if ml is None:
            return
        if facts.task not in ("multiclass", "binary"):
            raise ValueError(
                f"mislabel: label corruption needs a classification data set; "
                f"data.name={self.data.name} is a {facts.task} task"
            )
        count = round(ml.fraction * n_train)
        if not 0 < count < n_train:
            raise ValueError(
                f"mislabel.fraction: {ml.fraction} of the {n_train} training examples "
                f"corrupts {count}; it must corrupt at least one and not all"
            )
        if ml.shards > n_train:
            raise ValueError(
                f"mislabel.shards ({ml.shards}) exceeds the {n_train} training examples"
            )
        if ml.pbrf == "matched" and self.retrain.pbrf.horizon == "matched":
            solver, opt = self.influence.solver.name, self.train.optimizer.name
            if solver != "lissa" or opt not in ("sgd", "momentum"):
                raise ValueError(
                    "mislabel.pbrf: 'matched' with retrain.pbrf.horizon='matched' needs LiSSA "
                    f"and SGD or momentum (influence.solver.name={solver}, "
                    f"train.optimizer.name={opt}); use mislabel.pbrf='paper'"
                )

    def _check_model(self, facts: Any) -> None:
        kinds, tasks = MODEL_INPUTS[self.model.name]
        where = f"model.name={self.model.name} cannot read data.name={self.data.name}"
        if facts.kind not in kinds or facts.task not in tasks:
            raise ValueError(
                f"{where} ({facts.kind} inputs, {facts.task} task); it takes "
                f"{'/'.join(sorted(kinds))} inputs for {'/'.join(sorted(tasks))} tasks"
            )
        try:
            parameter_count(self.model, input_shape=facts.input_shape, output_dim=facts.output_dim)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} (inputs of shape {facts.input_shape}): {exc}") from None
        activation = getattr(self.model, "activation", None)
        if self.kernel == "mlp" and (
            self.model.name != "mlp" or activation not in ("relu", "tanh", "sigmoid")
        ):
            raise ValueError(
                f"kernel=mlp needs model.name=mlp with a relu, tanh or sigmoid activation, got "
                f"model.name={self.model.name}; use kernel=auto"
            )

    def _check_horizon(self) -> None:
        if "pbrf" not in self.retrain.variants and "linearized_pbrf" not in self.retrain.variants:
            return
        if self.retrain.pbrf.horizon != "matched":
            return
        solver = self.influence.solver.name
        opt = self.train.optimizer.name
        if solver != "lissa" or opt not in ("sgd", "momentum"):
            why = (
                f"influence.solver.name={solver} has no horizon T/σ"
                if solver != "lissa"
                else f"train.optimizer.name={opt} has no fixed step η"
            )
            raise ValueError(
                f"retrain.pbrf.horizon: 'matched' needs LiSSA and SGD or momentum, but {why}; "
                "set retrain.pbrf.horizon to 'explicit'"
            )

    def loss_name(self, default: str | None = None) -> str:
        """The output loss: ``loss`` unless ``auto``, else the data set's natural loss."""
        if self.loss != "auto":
            return self.loss
        return default if default is not None else self.data.signature().default_loss
