"""Small studies shared by the pipeline tests: the default preset's smoke scale, run node by node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbrf.study.config import StudyConfig
from pbrf.study.presets import load_preset
from tasks.engine.plan import build_plan
from tasks.engine.runner import NodeResult, run_node, write_run_config


def smoke_config(**overrides: Any) -> StudyConfig:
    """``digits-mlp`` at its smoke scale (100 training points, 16-wide MLP, 3 epochs, M = 3),
    with ``section__key=value`` overrides (``__`` for ``.``)."""
    return load_preset(
        "digits-mlp", {k.replace("__", "."): v for k, v in overrides.items()}, "smoke"
    )


def run_study(root: Path, cfg: StudyConfig, *, force: bool = False) -> dict[str, NodeResult]:
    """Run (or reuse) every node of ``cfg``'s plan in ``root``, in order, without Prefect."""
    plan = build_plan(cfg.model_dump(mode="json"))
    write_run_config(root, cfg)
    return {n.id: run_node(root, cfg, n.id, plan=plan, force=force) for n in plan}


def states(results: dict[str, NodeResult]) -> dict[str, str]:
    return {k: r.state for k, r in results.items()}
