"""Named studies (presets), each at one or more scales, and dotted-key overrides.

A preset is a plain dict validated into a :class:`~pbrf.study.config.StudyConfig`. Scales are
override sets on top of it: ``smoke`` (minutes on a laptop CPU, for CI and a first look),
for the paper's rows ``paper`` (Appendix E's settings, sized for a GPU) and, where the paper's
scale needs a GPU, ``cpu`` (about an hour on 2 CPU cores, every reduction listed in the preset's
``scale_notes``). A preset's
``default_scale`` is what ``pbrf run PRESET`` uses without ``--scale``.

Overrides are ``{"train.optimizer.lr": 0.05, ...}``: dotted paths into the config dict. Parsing
``key=value`` strings (YAML values) is the command line's job, not this module's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pbrf.study.appendix import STUDY_PRESETS
from pbrf.study.config import StudyConfig
from pbrf.study.paper_rows import LR_NOTES, PAPER_ROWS, lr_row


@dataclass(frozen=True)
class Preset:
    """A study: its config, scales (override sets) and the paper row it reproduces."""

    config: dict[str, Any]
    description: str
    scales: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_scale: str | None = None
    paper_row: tuple[str, str] | None = None  # (model, dataset) in the paper's tables
    notes: tuple[str, ...] = ()  # choices where the paper is silent or contradicts itself
    scale_notes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a scale's reductions

    def scale_names(self) -> list[str]:
        return [*(["default"] if self.default_scale is None else []), *self.scales]


# The scale every preset has: a few seconds of training, for CI and a first look.
def _smoke(**extra: Any) -> dict[str, Any]:
    return {
        "select.num_removals": 3,
        "select.test_points": 10,
        "train.epochs": 3,
        "influence.solver.depth": 20,
        **extra,
    }


PRESETS: dict[str, Preset] = {
    # A 64-128-128-10 ReLU MLP on scikit-learn digits: the paper's MLP/MNIST set-up, laptop
    # sized. The PBRF is trained for as many steps as make η·S equal LiSSA's T/σ.
    "digits-mlp": Preset(
        config={
            "name": "digits-mlp",
            "data": {"name": "digits"},
            "model": {"name": "mlp", "width": 128, "depth": 2},
            "train": {"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 100, "batch_size": 128},
            "influence": {"solver": {"name": "lissa", "depth": 300, "batch_size": None}},
            "damping": 0.001,
        },
        description="MLP 64-128-128-10 on scikit-learn digits (the default study)",
        scales={"smoke": _smoke(**{"data.train_size": 100, "model.width": 16})},
        paper_row=("mlp", "mnist"),
    ),
    # The paper's LR/Cancer row: strongly convex, trained to convergence with L-BFGS, so every
    # gap is ≈ 0 and influence matches leave-one-out retraining.
    "cancer-lr": Preset(
        **{
            **lr_row(
                "cancer-lr", {"name": "breast_cancer"}, "breast cancer (UCI Cancer)", "cancer"
            ),
            "scales": {
                "smoke": _smoke(**{"train.epochs": 200, "influence.solver.depth": 2000}),
                "paper": {},
            },
            "default_scale": None,  # the config as it stands is the default scale
            "notes": (
                "data: scikit-learn's copy of UCI Wisconsin diagnostic breast cancer (the same "
                "tensors as wdbc.data)",
                *LR_NOTES,
            ),
        }
    ),
    # Regression MLP on scikit-learn diabetes (the paper's Concrete/Energy set-up: 2 hidden
    # layers of 128, squared error, standardized inputs and targets).
    "diabetes-mlp": Preset(
        config={
            "name": "diabetes-mlp",
            "data": {"name": "diabetes"},
            "model": {"name": "mlp", "width": 128, "depth": 2},
            "train": {"optimizer": {"name": "sgd", "lr": 0.01}, "epochs": 200, "batch_size": 32},
            "influence": {"solver": {"name": "lissa", "depth": 1000, "batch_size": None}},
            "select": {"test_points": 89},
            "damping": 0.001,
        },
        description="MLP 10-128-128-1 on scikit-learn diabetes (regression)",
        scales={"smoke": _smoke(**{"model.width": 16})},
        paper_row=("mlp", "concrete"),
    ),
}

# The paper's other Table 5 / Table 2 rows, each at a `paper` (default) and a `smoke` scale.
PRESETS.update({name: Preset(**row) for name, row in PAPER_ROWS.items()})
# The appendix studies' presets (Figure 6), each with a `smoke` scale.
PRESETS.update({name: Preset(**row) for name, row in STUDY_PRESETS.items()})

DEFAULT_PRESET = "digits-mlp"


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return PRESETS[name]


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``{"a.b.c": value}`` overrides applied (sections are created).

    Changing a section's ``name`` (``model.name``, ``train.optimizer.name``,
    ``influence.solver.name``) starts that section afresh from the new choice's defaults: the
    old choice's options would not apply to it. ``name`` overrides are applied first.
    """
    out = copy.deepcopy(dict(base))
    ordered = sorted(overrides.items(), key=lambda kv: not kv[0].endswith(".name"))
    for key, value in ordered:
        path = [p for p in key.split(".") if p]
        if not path:
            raise ValueError(f"override {key!r} has an empty key")
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if isinstance(child, str):  # `optimizer: sgd` shorthand, now gaining fields
                child = node[part] = {"name": child}
            if not isinstance(child, dict):
                raise ValueError(f"override {key}: {part!r} is not a section")
            node = child
        if path[-1] == "name" and len(path) > 1 and node.get("name") not in (None, value):
            node.clear()
        node[path[-1]] = value
    return out


def preset_dict(name: str, scale: str | None = None) -> dict[str, Any]:
    """The config dict of preset ``name`` at ``scale`` (its default scale when ``None``)."""
    preset = get_preset(name)
    scale = scale or preset.default_scale
    if scale in (None, "default"):
        if preset.default_scale is not None and scale == "default":
            raise ValueError(f"preset {name!r} has no default scale; choose {preset.scale_names()}")
        return copy.deepcopy(preset.config)
    if scale not in preset.scales:
        raise ValueError(f"preset {name!r} has no scale {scale!r}; choose {preset.scale_names()}")
    return apply_overrides(preset.config, preset.scales[scale])


def load_preset(
    name: str, overrides: Mapping[str, Any] | None = None, scale: str | None = None
) -> StudyConfig:
    """The validated config of preset ``name`` at ``scale`` with ``overrides`` applied."""
    return StudyConfig.model_validate(apply_overrides(preset_dict(name, scale), overrides or {}))
