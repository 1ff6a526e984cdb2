"""The ``decomposition`` flow: every node of the plan as a Prefect task, edges from the registry.

prepare → train_base, select → curvature → (six retraining variants ∥ influence) → aggregate →
report. The nodes and their ``wait_for`` edges come from :func:`tasks.plan.build_plan`; this
module only submits them and publishes the tables. Parameters are one pydantic model, so the
Prefect UI renders a form for them.
"""

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flows import settings

settings.apply()

from prefect import flow  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.prefect_tasks import run_node_task, warm_up  # noqa: E402
from flows.threads import configure_threads  # noqa: E402
from pbrf.presets import DEFAULT_PRESET, load_preset  # noqa: E402


class DecompositionParams(BaseModel):
    """What to run: a preset at a scale plus ``key.path: value`` overrides, and where."""

    preset: str = Field(DEFAULT_PRESET, description="preset name (pbrf presets)")
    scale: str | None = Field(None, description="preset scale, e.g. smoke or paper")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='dotted config keys to override, e.g. {"train.optimizer.lr": 0.05}',
    )
    out: str | None = Field(None, description="run directory (default: runs/<preset>)")
    device: str | None = Field(None, description="cpu, cuda, cuda:N (default: the config's)")
    refresh: bool = Field(False, description="recompute every step, ignoring finished ones")

    def config(self):
        overrides = dict(self.overrides)
        if self.device is not None:
            overrides["device"] = self.device
        return load_preset(self.preset, overrides, self.scale)

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        suffix = f"-{self.scale}" if self.scale else ""
        return Path("runs") / f"{self.preset}{suffix}"


def _run_name() -> str:
    params = flow_run.parameters.get("params") or {}
    preset = params.get("preset", DEFAULT_PRESET) if isinstance(params, dict) else DEFAULT_PRESET
    return f"{preset}-{_dt.datetime.now():%Y-%m-%d-%H%M}"


@flow(
    name="decomposition",
    task_runner=ThreadPoolTaskRunner(max_workers=8),
    validate_parameters=True,
    flow_run_name=_run_name,
)
def decomposition(params: DecompositionParams = DecompositionParams()) -> dict[str, Any]:  # noqa: B008
    """Run the five-term decomposition study; return the run directory and each node's state
    (``Completed`` or ``Cached``), its compute seconds and its warnings."""
    from tasks.plan import build_plan
    from tasks.runner import write_run_config

    cfg = params.config()
    config = cfg.model_dump(mode="json")
    plan = build_plan(config)
    configure_threads(parallel=len(cfg.retrain.variants) * cfg.retrain.shards + 1)
    out = params.out_dir()
    write_run_config(out, cfg)
    warm_up()
    futures = {}
    for node in plan:
        futures[node.id] = run_node_task.submit(
            str(out),
            config,
            node.id,
            params.refresh,
            wait_for=[futures[u] for u in node.upstream],
        )
    nodes = {}
    for node_id, fut in futures.items():
        record = fut.result()
        nodes[node_id] = {**record, "state": fut.state.name}
    from flows.publish import publish

    publish(out, cfg, plan)
    from flows.publish_studies import publish_studies

    publish_studies(out, cfg, plan)
    return {"out": os.fspath(out), "config": config, "nodes": nodes}
