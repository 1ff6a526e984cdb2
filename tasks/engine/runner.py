"""Run one node of a plan: reuse it when its manifest says it is current, else execute it.

The same function serves every front end — the Prefect flow (one task per node), ``pbrf step``
(what the DVC stages call) and tests — so reuse, integrity checks and manifests have one
implementation.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.engine import manifest
from tasks.engine.context import StepContext, environment
from tasks.engine.plan import Plan, build_plan
from tasks.registry import STEPS


@dataclass
class NodeResult:
    node: str
    state: str  # "Completed" (ran) or "Cached" (reused)
    seconds: float  # compute time of the run that produced the outputs
    warnings: list[str] = field(default_factory=list)
    reason: str = ""  # why it ran (empty when cached)

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "state": self.state,
            "seconds": self.seconds,
            "warnings": self.warnings,
            "reason": self.reason,
        }


def step_function(step: str) -> Callable[[StepContext], None]:
    module, name = STEPS[step].function.split(":")
    return getattr(importlib.import_module(module), name)


def run_node(
    root: Path | str, cfg: Any, node_id: str, *, plan: Plan | None = None, force: bool = False
) -> NodeResult:
    """Reuse or execute ``node_id`` of ``cfg``'s plan in run directory ``root``."""
    root = Path(root)
    plan = plan or build_plan(cfg.model_dump(mode="json"))
    node = plan[node_id]
    state = manifest.status(root, node)
    if state.current and not force:
        m = state.manifest or {}
        return NodeResult(
            node.id, "Cached", float(m.get("seconds", 0.0)), list(m.get("warnings", []))
        )
    ctx = StepContext(root=root, config=cfg, plan=plan, node=node)
    ctx.clean_temps()
    begun = manifest.begin(root, node)  # the code and inputs this execution starts from
    start = time.perf_counter()
    step_function(node.step)(ctx)
    seconds = time.perf_counter() - start
    env = environment(cfg.device, cfg.kernel)
    manifest.record(root, node, seconds=seconds, warnings=ctx.warnings, env=env, begun=begun)
    return NodeResult(
        node.id, "Completed", round(seconds, 3), ctx.warnings, state.reason or "forced"
    )


CONFIG_FILE = "config.json"


def write_run_config(root: Path | str, cfg: Any) -> Path:
    """Save the validated config next to the artifacts (``config.json``) with the node stamps."""
    from tasks.engine.artifacts import write_json

    plan = build_plan(cfg.model_dump(mode="json"))
    return write_json(
        Path(root) / CONFIG_FILE,
        {"config": cfg.model_dump(mode="json"), "stamps": {n.id: n.stamp for n in plan}},
    )


def read_run_config(root: Path | str) -> Any:
    """The config saved by :func:`write_run_config` in run directory ``root``."""
    import json

    from pbrf.study.config import StudyConfig

    path = Path(root) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a pbrf run directory")
    return StudyConfig.model_validate(json.loads(path.read_text(encoding="utf-8"))["config"])
