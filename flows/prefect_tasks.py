"""The one Prefect task: run (or reuse) a node of the plan.

Every step runs through :func:`run_node_task`, named after its node (``retrain-pbrf``); a node
whose manifest is current finishes in a ``Cached`` state without computing. Caching is the
manifests' (content hashes, :mod:`tasks.manifest`), not Prefect's, so the CLI, DVC and Prefect
agree on what is current.

``torch.func.jvp`` keeps PyTorch's forward-mode AD level in process-global state, so two threads
inside jvp at once corrupt each other; the thread task runner runs steps in threads, so nodes
that use jvp (the linearized PBRF, curvature products) take a process-wide lock here. On Dask,
use worker processes with one thread each (the lock then never waits).
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

_FORWARD_AD = threading.Lock()


def run_node_here(
    root: str, config: dict[str, Any], node_id: str, force: bool = False, threads: int | None = None
) -> Any:
    """Run or reuse ``node_id``; ``threads`` sets torch's intra-op threads where this runs (a
    Dask worker process does not inherit the flow process's setting)."""
    import torch

    from pbrf.config import StudyConfig
    from tasks.plan import build_plan
    from tasks.runner import run_node

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cfg = StudyConfig.model_validate(config)
    plan = build_plan(config)
    lock = _FORWARD_AD if plan[node_id].forward_ad else nullcontext()
    with lock:
        result = run_node(root, cfg, node_id, plan=plan, force=force)
    if result.state == "Cached":
        return Completed(name="Cached", message="outputs current", data=result.as_dict())
    return result.as_dict()


# The task wraps a module-level function, so Dask pickles it by reference (a worker imports this
# module, with its own lock) instead of by value (which would try to pickle the lock).
run_node_task = task(
    name="node", task_run_name="{node_id}", cache_policy=NO_CACHE, persist_result=False
)(run_node_here)
