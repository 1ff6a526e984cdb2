"""Tiny study configs shared by the pipeline tests (tests/test_pipeline_*.py)."""

from __future__ import annotations

from typing import Any

from pbrf.config import StudyConfig
from pbrf.presets import load_preset

# digits, 100 training points, a 16-wide MLP, 3 epochs, 3 removals, LiSSA depth 20 full batch
TINY: dict[str, Any] = {
    "data.train_size": 100,
    "model.options.width": 16,
    "train.epochs": 3,
    "retrain.num_removals": 3,
    "retrain.pbrf_epochs": None,
    "influence.depth": 20,
    "influence.test_points": 10,
}


def tiny_overrides(**extra: Any) -> dict[str, Any]:
    """``TINY`` plus dotted-key overrides given with ``__`` for ``.`` (``train__lr=0.05``)."""
    return {**TINY, **{k.replace("__", "."): v for k, v in extra.items()}}


def tiny_config(**extra: Any) -> StudyConfig:
    return load_preset("digits-mlp", tiny_overrides(**extra))


def tiny_set_args(**extra: Any) -> list[str]:
    """The same overrides as ``--set key=value`` CLI arguments."""
    args: list[str] = []
    for key, value in tiny_overrides(**extra).items():
        args += ["--set", f"{key}={'null' if value is None else value}"]
    return args
