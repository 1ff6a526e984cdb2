"""Sweep studies: the decomposition over a grid of one or two config keys (Section 6.2, Fig. 5).

A :class:`SweepPreset` names a study preset, the config key it sweeps and, per scale, the grid
and the overrides that size the study; :func:`resolve_sweep` turns one (or a study preset plus
an ad-hoc grid) into a :class:`SweepSpec` — the serializable description of one sweep — whose
:meth:`SweepSpec.points` are ordinary validated :class:`~pbrf.study.config.StudyConfig` objects.

Scales: ``smoke`` (CI, seconds per point: scikit-learn digits, 100 training points, a 16-wide
MLP, 3 epochs, M = 3), ``laptop`` (about a minute per point on a 2-core CPU: 500 digits, a
64-wide MLP, 50 epochs, M = 10) and ``paper`` (Appendix E.4: 10 % of MNIST, a 2-layer
1024-wide MLP, 1000 epochs of SGD, batch 128, damping 10⁻³, LiSSA depth 5000 × 5 repeats,
M = 20; sized for a GPU). The digits scales are stand-ins for 10 % of MNIST; their grids are
the paper's where a CPU allows and are marked otherwise.

``expectations`` state what Section 6.2 reports for each sweep (and, for the PBRF-horizon
sweep, what horizon matching predicts), so a report can say where the trend appears.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pbrf.study.config import StudyConfig
from pbrf.study.presets import apply_overrides, get_preset, preset_dict

LR_KEY = "train.optimizer.lr"
Trend = Literal["increases", "decreases", "peaks", "dips"]
XAxis = Literal["value", "horizon_ratio"]
MAX_AXES = 2


class PointError(ValueError):
    """A grid point whose config is invalid: ``point`` names it, ``error`` says why."""

    def __init__(self, point: str, error: ValidationError):
        self.point, self.error = point, error
        super().__init__(f"grid point {point}: {error}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Axis(_Frozen):
    """One swept config key and its grid."""

    key: str = Field(description="dotted config key, e.g. damping or model.width")
    values: tuple[Any, ...] = Field(description="the grid, in plotting order")
    log: bool = Field(False, description="plot this key on a log axis")

    @field_validator("values")
    @classmethod
    def _distinct(cls, v: tuple[Any, ...]) -> tuple[Any, ...]:
        if not v:
            raise ValueError("a sweep axis needs at least one value")
        if len({repr(x) for x in v}) != len(v):
            raise ValueError(f"values repeat: {list(v)}")
        return v


class Expectation(_Frozen):
    """A trend the paper (or our method) predicts: ``term`` against the swept value."""

    term: str = Field(description="a gap (warm_start, …, solver) or spearman:<reference>")
    trend: Trend
    source: str = Field(description="where the prediction comes from, e.g. 'Section 6.2'")


class Point(_Frozen):
    """One grid point: its id (a directory name), its swept values and its full config."""

    id: str
    values: dict[str, Any]
    config: StudyConfig


class SweepSpec(_Frozen):
    """A resolved sweep: the study preset, its overrides, the axes and what to expect."""

    name: str
    description: str = ""
    preset: str
    preset_scale: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    axes: tuple[Axis, ...]
    expectations: tuple[Expectation, ...] = ()
    x: XAxis = Field("value", description="plot against the swept value or η·S/(T/σ)")
    tune_lr: bool = Field(
        False,
        description=(
            "choose every point's learning rate by the paper's validation sweep before running "
            "(the paper scale's default; `pbrf sweep --tune-lr/--no-tune-lr`)"
        ),
    )
    lr: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "base learning rate per point id, chosen at each point by the paper's validation "
            "sweep (`pbrf sweep --tune-lr`); applied over the point's config"
        ),
    )

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: tuple[Axis, ...]) -> tuple[Axis, ...]:
        if not 1 <= len(v) <= MAX_AXES:
            raise ValueError(f"a sweep has one or two axes, got {len(v)}")
        if len({a.key for a in v}) != len(v):
            raise ValueError(f"axes repeat a key: {[a.key for a in v]}")
        return v

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.axes)

    def base(self) -> dict[str, Any]:
        """The study config dict every point starts from (preset, its scale, the overrides)."""
        return apply_overrides(preset_dict(self.preset, self.preset_scale), self.overrides)

    def points(self) -> list[Point]:
        """Every grid point (first axis outermost), validated; raises ``ValueError`` (or a
        pydantic ``ValidationError``) naming the key and the point when one is invalid."""
        base = self.base()
        out: list[Point] = []
        seen: dict[str, str] = {}
        if self.lr and LR_KEY in self.keys:
            raise ValueError(f"the sweep's axis {LR_KEY} cannot also be tuned per point")
        for combo in itertools.product(*(a.values for a in self.axes)):
            values = dict(zip(self.keys, combo, strict=True))
            pid = point_id(values)
            tuned = {LR_KEY: self.lr[pid]} if pid in self.lr else {}
            try:
                cfg = StudyConfig.model_validate(apply_overrides(base, {**values, **tuned}))
            except ValidationError as exc:
                raise PointError(pid, exc) from None
            dump = repr(cfg.model_dump(mode="json"))
            if dump in seen:
                raise ValueError(f"grid points {seen[dump]} and {pid} give the same config")
            seen[dump] = pid
            out.append(Point(id=pid, values=values, config=cfg))
        if len({p.id for p in out}) != len(out):
            raise ValueError(f"grid values give clashing point names: {[p.id for p in out]}")
        if unknown := sorted(set(self.lr) - {p.id for p in out}):
            raise ValueError(f"lr names points the grid does not have: {unknown}")
        return out


# --------------------------------------------------------------------------- point names


def _leaf(key: str, keys: tuple[str, ...]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    clash = sum(k.rsplit(".", 1)[-1] == leaf for k in keys) > 1
    return key.replace(".", "_") if clash else leaf


def format_value(value: Any) -> str:
    """A grid value as a name fragment of ``[A-Za-z0-9_-]`` (0.001 → 0p001, 1e-06 → 1e-06)."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = format(value, "g") if math.isfinite(value) else str(value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_-]", "", text.replace(".", "p").replace("+", ""))


def point_id(values: Mapping[str, Any]) -> str:
    """``{"damping": 0.001}`` → ``damping_0p001``; two axes are joined by ``__``."""
    keys = tuple(values)
    return "__".join(f"{_leaf(k, keys)}_{format_value(v)}" for k, v in values.items())


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class SweepScale:
    """A sweep at one scale: the study preset's scale, overrides, and the grid."""

    values: tuple[Any, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    preset_scale: str | None = None
    note: str = ""
    tune_lr: bool = False  # each point's learning rate by the paper's validation sweep


@dataclass(frozen=True)
class SweepPreset:
    description: str
    key: str
    scales: dict[str, SweepScale]
    log: bool = False
    preset: str = "digits-mlp"
    expectations: tuple[Expectation, ...] = ()
    x: XAxis = "value"
    default_scale: str = "smoke"

    def scale_names(self) -> list[str]:
        return list(self.scales)


SMOKE: dict[str, Any] = {}  # the study preset's own smoke scale
LAPTOP: dict[str, Any] = {
    "data.train_size": 500,
    "model.width": 64,
    "train.epochs": 50,
    "select.num_removals": 10,
}
PAPER: dict[str, Any] = {  # Appendix E.4 (MNIST data files: `pbrf data fetch mnist`)
    "data.name": "mnist",
    "data.fraction": 0.1,
    "model.width": 1024,
    "model.depth": 2,
    "train.epochs": 1000,
    "train.batch_size": 128,
    "influence.solver.depth": 5000,
    "influence.solver.repeats": 5,
    "influence.solver.batch_size": 128,
    "damping": 0.001,
}
PAPER_DAMPING = (0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 5e-4, 1e-4, 5e-5, 1e-5, 5e-6, 1e-6)
PAPER_WEIGHT_DECAY = (0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 5e-4, 1e-4, 5e-5, 1e-5)
PAPER_FRACTION = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Removing a fraction f of the data as one group puts f·N examples into the PBRF's −εΣℓ_z term
# (ε = 1/N each), where each one's Bregman term minus its loss is affine in its outputs: at
# f ≥ 0.5 the objective is held only by the proximal term, and a PBRF trained to LiSSA's
# horizon diverged (smoke scale, f = 0.5: non-finite loss after 111 of 604 epochs). The
# fraction sweep therefore trains the PBRF as the paper did (K/2 epochs at lr/10); influence
# keeps its LiSSA horizon, so the report flags the mismatch and the solver error includes it.
FRACTION = {
    "select.draws": "independent",
    "retrain.pbrf.horizon": "explicit",
    "retrain.pbrf.lr_factor": 0.1,
    "retrain.variants": ["cold", "warm", "proximal", "pbrf", "linearized_pbrf"],
}
_S62 = "Section 6.2"


def _scales(
    smoke: tuple[Any, ...],
    laptop: tuple[Any, ...],
    paper: tuple[Any, ...],
    extra: Mapping[str, Any] | None = None,
    notes: tuple[str, str] = ("", ""),
) -> dict[str, SweepScale]:
    extra = dict(extra or {})
    return {
        "smoke": SweepScale(smoke, {**SMOKE, **extra}, "smoke", notes[0]),
        "laptop": SweepScale(laptop, {**LAPTOP, **extra}, None, notes[1]),
        "paper": SweepScale(paper, {**PAPER, **extra}, None, "Appendix E.4 grid", tune_lr=True),
    }


# the horizon sweep trains only what the horizon changes (proximal is shared by every point)
_HORIZON = {
    "retrain.pbrf.horizon": "explicit",
    "retrain.variants": ["proximal", "pbrf", "linearized_pbrf"],
}

SWEEPS: dict[str, SweepPreset] = {
    "fig5-width": SweepPreset(
        "Figure 5, width: 2-layer MLP of growing width",
        "model.width",
        _scales(
            (4, 8, 16, 32),
            (16, 32, 64, 128, 256, 512),
            (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
            notes=("widths up to 32", "widths up to 512 (CPU)"),
        ),
        log=True,
        expectations=(Expectation(term="linearization", trend="decreases", source=_S62),),
    ),
    "fig5-depth": SweepPreset(
        "Figure 5, depth: MLP of growing depth at fixed width",
        "model.depth",
        _scales(
            (1, 2, 3),
            (1, 3, 5, 7),
            (1, 3, 5, 7, 9, 11, 13, 15),
            notes=("depths up to 3", "depths up to 7 (CPU)"),
        ),
        expectations=(),  # Section 6.2: no strong relationship with depth
    ),
    "fig5-epochs": SweepPreset(
        "Figure 5, training time: epochs of base training K",
        "train.epochs",
        _scales(
            (1, 3, 10, 30),
            (5, 25, 50, 150, 250, 350, 450),
            (100, 500, 1000, 3000, 5000, 7000, 9000),
            notes=("1–30 epochs", "the paper's grid × 0.05 (base K = 50 for K = 1000)"),
        ),
        log=True,
        expectations=(Expectation(term="non_convergence", trend="decreases", source=_S62),),
    ),
    "fig5-weight-decay": SweepPreset(
        "Figure 5, weight decay (L2 strength of base training and of every objective)",
        "train.weight_decay",
        _scales((0.1, 0.01, 0.001, 1e-4), PAPER_WEIGHT_DECAY, PAPER_WEIGHT_DECAY),
        log=True,
        expectations=tuple(
            Expectation(term=g, trend="decreases", source=_S62)
            for g in ("warm_start", "proximity", "non_convergence", "linearization", "solver")
        ),
    ),
    "fig5-damping": SweepPreset(
        "Figure 5, damping λ of the proximal terms and the iHVP",
        "damping",
        _scales((0.1, 0.01, 0.001, 1e-4, 1e-5), PAPER_DAMPING, PAPER_DAMPING),
        log=True,
        expectations=(
            Expectation(term="proximity", trend="increases", source=_S62),
            Expectation(term="linearization", trend="decreases", source=_S62),
            Expectation(term="solver", trend="decreases", source=_S62),
        ),
    ),
    "fig5-fraction": SweepPreset(
        "Figure 5, fraction of the training data removed as one group (independent draws)",
        "select.fraction",
        _scales((0.1, 0.5, 0.9), PAPER_FRACTION, PAPER_FRACTION, FRACTION),
        expectations=(
            Expectation(term="linearization", trend="increases", source=_S62),
            Expectation(term="warm_start", trend="increases", source=_S62),
        ),
    ),
    "pbrf-horizon": SweepPreset(
        "PBRF horizon η·S at fixed LiSSA T/σ: where IF-vs-PBRF agreement peaks",
        "retrain.pbrf.epochs",
        {
            # matched: ≈ 600 epochs (smoke), ≈ 280 (laptop); the grids span ≈ 1/30 … 3–10×
            "smoke": SweepScale((20, 60, 200, 600, 2000), dict(_HORIZON), "smoke"),
            "laptop": SweepScale((9, 28, 90, 280, 900, 2800), {**LAPTOP, **_HORIZON}),
            "paper": SweepScale((1, 3, 10, 30, 100, 300), {**PAPER, **_HORIZON}),
        },
        log=True,
        x="horizon_ratio",
        expectations=tuple(
            Expectation(term=term, trend=trend, source="horizon matching")
            for term, trend in (
                ("spearman:pbrf", "peaks"),
                ("pearson:pbrf", "peaks"),
                ("pearson:linearized_pbrf", "peaks"),
                ("solver", "dips"),
            )
        ),
    ),
}


def sweep_names() -> list[str]:
    return list(SWEEPS)


def resolve_sweep(
    name: str,
    scale: str | None = None,
    *,
    grid: Mapping[str, list[Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SweepSpec:
    """The :class:`SweepSpec` of sweep preset ``name`` at ``scale`` — or, when ``name`` is a
    study preset, of an ad-hoc sweep over ``grid``. A ``grid`` key that is already an axis
    replaces its values; another key becomes a second axis. ``overrides`` apply to every point.
    """
    grid = dict(grid or {})
    if name in SWEEPS:
        sp = SWEEPS[name]
        scale = scale or sp.default_scale
        if scale not in sp.scales:
            raise ValueError(f"sweep {name!r} has no scale {scale!r}; choose {sp.scale_names()}")
        sc = sp.scales[scale]
        axes = [Axis(key=sp.key, values=sc.values, log=sp.log)]
        spec = {
            "preset": sp.preset,
            "preset_scale": sc.preset_scale,
            "overrides": {**sc.overrides, **(overrides or {})},
            "description": sp.description + (f" ({sc.note})" if sc.note else ""),
            "expectations": sp.expectations,
            "x": sp.x,
            "tune_lr": sc.tune_lr,
        }
        label = f"{name}-{scale}"
    else:
        get_preset(name)  # unknown names fail here, listing the presets
        if not grid:
            raise ValueError(
                f"{name!r} is a study preset, not a sweep: give the grid (--grid KEY=[...]) "
                f"or choose a sweep: {sweep_names()}"
            )
        axes = []
        spec = {"preset": name, "preset_scale": scale, "overrides": dict(overrides or {})}
        label = f"{name}-{scale}" if scale else name
    for key, values in grid.items():
        if not isinstance(values, list | tuple):
            raise ValueError(f"--grid {key}: give a list of values, e.g. {key}=[1, 2]")
        match = [i for i, a in enumerate(axes) if a.key == key]
        if match:
            axes[match[0]] = axes[match[0]].model_copy(update={"values": tuple(values)})
        else:
            axes.append(Axis(key=key, values=tuple(values), log=False))
    if len(axes) > MAX_AXES:
        raise ValueError(f"a sweep has at most {MAX_AXES} axes, got {[a.key for a in axes]}")
    for a in axes:
        if a.key in spec["overrides"]:
            spec["overrides"] = {k: v for k, v in spec["overrides"].items() if k != a.key}
    return SweepSpec(name=label, axes=tuple(axes), **spec)
