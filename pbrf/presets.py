"""Named study presets and ``key=value`` overrides.

Each preset is a plain dict validated into a :class:`~pbrf.config.StudyConfig`; overrides use
dotted paths (``train.lr=0.05``, ``influence.scale=auto``, ``retrain.variants=[cold,pbrf]``) and
values in YAML syntax.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pbrf.config import StudyConfig

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's LR/Cancer row of Table 5: strongly convex, trained to convergence with L-BFGS,
    # so every gap is ≈ 0 and influence matches leave-one-out retraining.
    "cancer-lr": {
        "name": "cancer-lr",
        "data": {"name": "breast_cancer"},
        "model": {"name": "logistic_regression"},
        "train": {"optimizer": "lbfgs", "epochs": 1000, "weight_decay": 0.01, "batch_size": None},
        "retrain": {"num_removals": 20},
        "influence": {"solver": "lissa", "depth": 20000, "repeats": 1, "batch_size": None},
        "damping": 0.001,
        "dtype": "float64",
    },
    # A 64-128-128-10 ReLU MLP on scikit-learn digits (the paper's MLP/MNIST set-up, laptop
    # sized). The PBRF horizon η·S = 0.1 × 300 epochs × 12 steps = 360 matches LiSSA's
    # T/σ ≈ 300/0.85 ≈ 350 (GUIDE §4), so the two answer the same question.
    "digits-mlp": {
        "name": "digits-mlp",
        "data": {"name": "digits"},
        "model": {"name": "mlp", "options": {"width": 128, "depth": 2}},
        "train": {"optimizer": "sgd", "lr": 0.1, "epochs": 100, "batch_size": 128},
        "retrain": {"num_removals": 20, "pbrf_lr_factor": 1.0, "pbrf_epochs": 300},
        "influence": {
            "solver": "lissa",
            "depth": 300,
            "repeats": 1,
            "batch_size": None,
            "test_points": 100,
        },
        "damping": 0.001,
    },
    # Regression MLP on scikit-learn diabetes (the paper's Concrete/Energy set-up: 2 hidden
    # layers of 128, squared error, standardized inputs and targets). Horizons matched:
    # PBRF η·S = 0.01 × 100 epochs × 12 steps = 12, LiSSA T/σ = 240/σ ≈ 12 (σ ≈ 20).
    "diabetes-mlp": {
        "name": "diabetes-mlp",
        "data": {"name": "diabetes"},
        "model": {"name": "mlp", "options": {"width": 128, "depth": 2}},
        "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 200, "batch_size": 32},
        "retrain": {"num_removals": 20, "pbrf_lr_factor": 1.0},
        "influence": {
            "solver": "lissa",
            "depth": 1000,
            "repeats": 1,
            "batch_size": None,
            "test_points": 89,
        },
        "damping": 0.001,
    },
}

DEFAULT_PRESET = "digits-mlp"


def preset_names() -> list[str]:
    return list(PRESETS)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → ``(["a", "b"], parsed value)``; the value is read as YAML."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ValueError(f"override {item!r} has an empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(base: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with dotted-path overrides applied (list of ``k=v`` or a dict)."""
    out = copy.deepcopy(base)
    items = (
        overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    )
    for key, value in items:
        path = key.split(".") if isinstance(key, str) else key
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {'.'.join(path)}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return out


def load_preset(name: str, overrides: list[str] | dict[str, Any] | None = None) -> StudyConfig:
    """The validated config of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return StudyConfig.model_validate(apply_overrides(PRESETS[name], overrides or []))
