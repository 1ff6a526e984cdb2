"""The grading study's configuration: which influence estimators are scored, against what.

``grade.estimators`` maps estimator names to their settings (the models of
:mod:`pbrf.estimators`; ``{}`` or a bare list of names means their defaults), so
``--set grade.estimators.cg.tol=1e-6`` addresses one setting. Each one becomes a
pipeline node that runs on the study's θˢ, removals and test points; a grading node then
correlates every estimator's predicted test-loss changes (Eq. 23) with each *reference*:

==================  ===========================================================================
reference           what it is
==================  ===========================================================================
``pbrf``            the PBRF optimum (Eq. 8), horizon-matched to LiSSA by default
``pbrf_paper``      the PBRF in the paper's setting (K/2 epochs at lr/10)
``linearized_pbrf`` the linearized PBRF (Eq. 11)
``exact``           the ``exact`` estimator: (G + λI)⁻¹ solved directly, in float64
``cold``            cold-start leave-one-out retraining (Eq. 2, LOO)
(other variants)    ``warm``, ``proximal``: the intermediate optima of Table 1
==================  ===========================================================================

``references: null`` means every one of the first five that the study computes. With no
estimators (the default) the study has no grading nodes at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pbrf.estimators.registry import ESTIMATOR_NAMES, get_estimator

Reference = Literal["pbrf", "pbrf_paper", "linearized_pbrf", "exact", "cold", "warm", "proximal"]
DEFAULT_REFERENCES: tuple[str, ...] = ("pbrf", "pbrf_paper", "linearized_pbrf", "exact", "cold")
EXACT = "exact"  # the estimator that is also a reference
GRADE_CHECKPOINTS = 10  # TracIn checkpoints `pbrf grade` asks base training for, when none are set
FIRST_ORDER = ("sgd", "momentum")  # optimizers with the fixed step TracIn's factors need

_MODELS = tuple(get_estimator(n).settings for n in ESTIMATOR_NAMES)
EstimatorSpec = Annotated[Union[_MODELS], Field(discriminator="name")]  # noqa: UP007


class GradeConfig(BaseModel):
    """Which estimators are graded, against which references, and which one ranks them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    estimators: dict[str, EstimatorSpec] = Field(
        default_factory=dict,
        description="estimator name → its settings ({} for its defaults); empty: no grading",
    )
    references: tuple[Reference, ...] | None = Field(
        None, description="what each estimator is scored against; null: every available one"
    )
    rank_by: Reference = Field(
        "pbrf", description="the reference whose Spearman correlation ranks the estimators"
    )

    @field_validator("estimators", mode="before")
    @classmethod
    def _by_name(cls, v: Any) -> Any:
        """Accept ``"a,b"`` or ``[a, b]`` (defaults) and ``{name: settings}``; validate each
        entry against its own settings model, so an error names ``<name>.<field>``."""
        if isinstance(v, str):
            v = [s.strip() for s in v.split(",") if s.strip()]
        if isinstance(v, list | tuple):
            v = {name: {} for name in v}
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            if key not in ESTIMATOR_NAMES:
                raise ValueError(f"unknown estimator {key!r}; choose from {list(ESTIMATOR_NAMES)}")
            model = get_estimator(key).settings
            if isinstance(value, model):
                out[key] = value
                continue
            data = dict(value or {})
            if data.setdefault("name", key) != key:
                raise ValueError(f"{key}.name: {data['name']!r} differs from its key {key!r}")
            try:
                out[key] = model.model_validate(data)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in (key, *err.get("loc", ())))
                msg = str(err.get("msg", "")).removeprefix("Value error, ")
                got = f" (got {err['input']!r})" if err.get("type") != "value_error" else ""
                raise ValueError(f"{loc}: {msg}{got}") from None
        return out

    @model_validator(mode="after")
    def _unique(self) -> GradeConfig:
        if self.references is not None and len(set(self.references)) != len(self.references):
            raise ValueError(f"references repeat: {list(self.references)}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.estimators)

    def settings(self, name: str) -> BaseModel:
        if name not in self.estimators:
            raise KeyError(f"estimator {name!r} is not graded; graded: {list(self.names)}")
        return self.estimators[name]


def available_references(variants: Sequence[str], estimators: Sequence[str]) -> tuple[str, ...]:
    """The default references this study computes: trained variants, and ``exact`` if graded."""
    have = set(variants) | ({EXACT} & set(estimators))
    return tuple(r for r in DEFAULT_REFERENCES if r in have)


def references(cfg: Any) -> tuple[str, ...]:
    """``cfg.grade.references`` resolved (``None`` → :func:`available_references`)."""
    grade = cfg.grade
    if grade.references is not None:
        return tuple(grade.references)
    return available_references(cfg.retrain.variants, tuple(grade.estimators))


def check_grade(cfg: Any) -> None:
    """Cross-section checks of ``cfg.grade`` (raises ``ValueError`` naming the field)."""
    grade = cfg.grade
    if not grade.estimators:
        return
    if "tracin" in grade.names and cfg.train.optimizer.name not in FIRST_ORDER:
        raise ValueError(
            "grade.estimators: tracin needs base training with a fixed SGD step (sgd or "
            f"momentum), but train.optimizer.name={cfg.train.optimizer.name}; drop tracin"
        )
    if "tracin" in grade.names and cfg.train.checkpoints < 1:
        raise ValueError(
            "train.checkpoints: the tracin estimator needs checkpoints of base training; set "
            f"train.checkpoints ≥ 1 (e.g. {GRADE_CHECKPOINTS}) or drop tracin from grade.estimators"
        )
    refs = references(cfg)
    for ref in refs:
        if ref == EXACT and EXACT not in grade.names:
            raise ValueError(
                "grade.references: 'exact' is the exact estimator's answer; add exact to "
                "grade.estimators"
            )
        if ref != EXACT and ref not in cfg.retrain.variants:
            raise ValueError(
                f"grade.references: {ref!r} is not trained; add it to retrain.variants "
                f"(now {list(cfg.retrain.variants)})"
            )
    if not refs:
        raise ValueError("grade.references: nothing to grade against; train a PBRF variant")
    if grade.rank_by not in refs:
        raise ValueError(
            f"grade.rank_by: {grade.rank_by!r} is not among the references {list(refs)}"
        )


def grade_overrides(
    cfg: Any, names: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Config overrides that grade ``names`` (``None``: every built-in estimator that applies).

    Each estimator gets its own defaults, except ``lissa``, which takes the study's LiSSA
    settings (``influence.solver``) so that the horizon-matched PBRF is matched to it. When
    ``tracin`` is graded and base training saves no checkpoints, ``train.checkpoints`` is set to
    ``min(GRADE_CHECKPOINTS, train.epochs)``. Returns the overrides and notes on what was dropped
    (``tracin`` without a fixed SGD step, when ``names`` is ``None``).
    """
    notes: list[str] = []
    if names is None:
        chosen = list(ESTIMATOR_NAMES)
        if cfg.train.optimizer.name not in FIRST_ORDER and cfg.train.checkpoints == 0:
            chosen.remove("tracin")
            notes.append(
                f"tracin skipped: train.optimizer.name={cfg.train.optimizer.name} has no fixed "
                "SGD step for its checkpoints"
            )
    else:
        unknown = [n for n in names if n not in ESTIMATOR_NAMES]
        if unknown:
            raise ValueError(
                f"grade.estimators: unknown estimator(s) {unknown}; choose from "
                f"{list(ESTIMATOR_NAMES)}"
            )
        chosen = list(dict.fromkeys(names))
    specs: dict[str, dict[str, Any]] = {}
    for name in chosen:
        solver = cfg.influence.solver
        if name == "lissa" and solver.name == "lissa":
            specs[name] = solver.model_dump(mode="json")
        else:
            specs[name] = {"name": name}
    out: dict[str, Any] = {"grade.estimators": specs}
    if (
        "tracin" in chosen
        and cfg.train.checkpoints == 0
        and cfg.train.optimizer.name in FIRST_ORDER
    ):
        out["train.checkpoints"] = min(GRADE_CHECKPOINTS, cfg.train.epochs)
    return out, notes
