"""Prefect ``@task`` wrappers of the steps, and a cache key that sees library edits.

Cache key of a step run = SHA-256 of

* the step name (and variant),
* :func:`tasks.fingerprint.config_hash` — only the config keys the step depends on,
* :func:`tasks.fingerprint.code_hash` — every ``*.py`` of the ``pbrf`` and ``tasks`` packages
  (Prefect's ``TASK_SOURCE`` would miss an edit inside the library),
* the SHA-256 of each input artifact file (so a recomputed upstream with different bytes
  invalidates everything downstream),
* the absolute run directory (artifacts of another directory are not reused).

Results (a small JSON record per step) are persisted under ``<run>/.prefect/results/`` — the
cache lives with the artifacts it describes, so deleting a run directory also drops its cache.
Before submitting, :func:`submit_step` checks that the step's artifacts still exist, are readable
and carry the expected config hash; if not (deleted, overwritten by another config, truncated),
the step is submitted with ``refresh_cache=True`` so it recomputes instead of returning a cached
record that points at files which are no longer valid.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture

from pbrf.config import StudyConfig
from tasks import fingerprint
from tasks.artifacts import verify_artifact
from tasks.layout import RunLayout
from tasks.steps import run_step


def step_cache_key(
    step: str, out: str | Path, config: dict[str, Any], variant: str | None = None
) -> str:
    """The cache key of one step run (see the module docstring)."""
    cfg = StudyConfig.model_validate(config)
    layout = RunLayout(out)
    inputs = {}
    for path in layout.inputs(step, cfg, variant):
        rel = path.relative_to(layout.root).as_posix()
        inputs[rel] = fingerprint.file_digest(path) if path.is_file() else "missing"
    parts = {
        "step": step,
        "variant": variant,
        "config": fingerprint.config_hash(cfg, step),
        "code": fingerprint.code_hash(),
        "inputs": inputs,
        "out": str(Path(out).resolve()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class StepCachePolicy(CachePolicy):
    """Prefect cache policy computing :func:`step_cache_key` from the task's parameters."""

    step: str = ""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return step_cache_key(self.step, inputs["out"], inputs["config"], inputs.get("variant"))


def _options(step: str) -> dict[str, Any]:
    return {
        "name": step.replace("_", "-"),
        "cache_policy": StepCachePolicy(step=step),
        "persist_result": True,
        "result_serializer": "json",
    }


def _run(step: str, out: str, config: dict[str, Any], variant: str | None = None) -> dict:
    return run_step(step, out, StudyConfig.model_validate(config), variant=variant)


@task(**_options("prepare"))
def prepare_task(out: str, config: dict[str, Any]) -> dict:
    return _run("prepare", out, config)


@task(**_options("train_base"))
def train_base_task(out: str, config: dict[str, Any]) -> dict:
    return _run("train_base", out, config)


@task(**_options("select"))
def select_task(out: str, config: dict[str, Any]) -> dict:
    return _run("select", out, config)


@task(**_options("retrain"), task_run_name="retrain-{variant}")
def retrain_task(out: str, config: dict[str, Any], variant: str) -> dict:
    return _run("retrain", out, config, variant)


@task(**_options("influence"))
def influence_task(out: str, config: dict[str, Any]) -> dict:
    return _run("influence", out, config)


@task(**_options("aggregate"))
def aggregate_task(out: str, config: dict[str, Any]) -> dict:
    return _run("aggregate", out, config)


@task(**_options("report"))
def report_task(out: str, config: dict[str, Any]) -> dict:
    return _run("report", out, config)


PREFECT_TASKS: dict[str, Task] = {
    "prepare": prepare_task,
    "train_base": train_base_task,
    "select": select_task,
    "retrain": retrain_task,
    "influence": influence_task,
    "aggregate": aggregate_task,
    "report": report_task,
}


def outputs_valid(out: str | Path, cfg: StudyConfig, step: str, variant: str | None = None) -> bool:
    """True when every artifact of ``step`` exists, is readable and matches the config."""
    layout = RunLayout(out)
    h = fingerprint.config_hash(cfg, step)
    return all(verify_artifact(p, step, h) for p in layout.outputs(step, variant))


def submit_step(
    step: str,
    out: str | Path,
    cfg: StudyConfig,
    *,
    variant: str | None = None,
    wait_for: Sequence[PrefectFuture] = (),
    refresh: bool = False,
) -> PrefectFuture:
    """Submit ``step`` to the flow's task runner, persisting its result under the run directory."""
    layout = RunLayout(out)
    refresh = refresh or not outputs_valid(out, cfg, step, variant)
    configured = PREFECT_TASKS[step].with_options(
        result_storage=layout.prefect_results.resolve(), refresh_cache=refresh
    )
    kwargs: dict[str, Any] = {"out": str(out), "config": cfg.model_dump(mode="json")}
    if variant is not None:
        kwargs["variant"] = variant
    return configured.submit(**kwargs, wait_for=list(wait_for))
