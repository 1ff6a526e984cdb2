"""The ``decomposition`` flow: every node of the plan as a Prefect task, edges from the registry.

prepare → train_base, select → spectrum → (the retraining variants ∥ influence) → aggregate →
report. The nodes and their ``wait_for`` edges come from :func:`tasks.engine.plan.build_plan`; this
module only submits them and publishes the tables. Parameters are one pydantic model, so the
Prefect UI renders a form for them.
"""

import os
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from flows import settings

settings.apply()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from prefect.task_runners import ProcessPoolTaskRunner  # noqa: E402

from flows.params import StudyParams, run_namer  # noqa: E402
from flows.prefect_tasks import submit_node, warm_up  # noqa: E402
from flows.runners import (  # noqa: E402
    dask_gpu_slots,
    head_start,
    is_dask,
    placement,
    submission_order,
    task_runner,
)
from flows.threads import configure_threads, study_parallel  # noqa: E402
from pbrf.study.presets import DEFAULT_PRESET  # noqa: E402


class DecompositionParams(StudyParams):
    """What to run: a preset at a scale plus ``key.path: value`` overrides, and where."""

    out: str | None = Field(
        None, description="run directory (default: runs/PRESET or runs/PRESET-SCALE)"
    )
    drift_check: bool = Field(
        False,
        description="compare with the last accepted run of this preset and code; mark drift",
    )
    accept_baseline: bool = Field(
        False,
        description="with drift_check: make this run the baseline even if it drifted",
    )

    def out_dir(self) -> Path:
        return self.run_dir(self.preset)


@flow(
    name="decomposition",
    task_runner=task_runner(),  # $PBRF_DASK_ADDRESS: a Dask cluster
    validate_parameters=True,
    flow_run_name=run_namer("preset", DEFAULT_PRESET),
)
def decomposition(params: DecompositionParams = DecompositionParams()) -> dict[str, Any]:  # noqa: B008
    """Run the five-term decomposition study; return the run directory and each node's state
    (``Completed`` or ``Cached``), its compute seconds and its warnings."""
    from tasks.engine.plan import build_plan
    from tasks.engine.runner import run_node, write_run_config

    cfg = params.config()
    config = cfg.model_dump(mode="json")
    plan = build_plan(config)
    threads = configure_threads(parallel=study_parallel(cfg))
    out = params.out_dir()
    write_run_config(out, cfg)
    warm_up()
    root = str(out.resolve())  # workers elsewhere see the run directory at the same path
    runner = FlowRunContext.get().task_runner
    gpu_slots = dask_gpu_slots(runner) if cfg.device.startswith("cuda") else 0
    if cfg.device.startswith("cuda") and not gpu_slots and is_dask(runner):
        get_run_logger().warning("no Dask worker advertises a GPU resource (--resources GPU=1)")
    futures = {}
    held = isinstance(runner, ProcessPoolTaskRunner)  # influence first (head_start)
    for node in submission_order(plan):
        if held and node.step == "retrain":
            head_start(plan, futures)
            held = False
        with placement(cfg.device, node.step, on_dask=gpu_slots > 0):
            futures[node.id] = submit_node(
                node.id,
                partial(run_node, root, cfg, node.id, plan=plan, force=params.refresh),
                device=cfg.device,
                forward_ad=node.forward_ad,
                threads=threads,
                wait_for=[futures[u] for u in node.upstream],
            )
    nodes = {}
    for node in plan:  # in the plan's order, whatever order they were submitted in
        fut = futures[node.id]
        record = fut.result()
        nodes[node.id] = {**record, "state": fut.state.name}
    from flows.drift import code_note, record_run
    from flows.publish import artifact_scope, publish
    from tasks.engine.context import environment

    scope = artifact_scope(params.preset, params.scale)
    publish(out, cfg, plan, scope=scope, note=code_note())
    from flows.publish_studies import publish_studies

    publish_studies(out, cfg, plan, scope=scope)
    result = {"out": os.fspath(out), "config": config, "nodes": nodes}
    result["flow_run_id"] = str(flow_run.id) if flow_run.id else None
    env = {**environment(cfg.device, cfg.kernel), "threads": threads}
    return record_run(  # with drift_check: the final state says whether anything drifted
        out,
        cfg,
        plan,
        preset=params.preset,
        scale=params.scale,
        env=env,
        check=params.drift_check,
        result=result,
        accept=params.accept_baseline,
        scope=scope,
    )
