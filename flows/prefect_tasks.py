"""The one Prefect task: run (or reuse) a node of the plan.

Every step runs through :func:`run_node_task`, named after its node (``retrain-pbrf``); a node
whose manifest is current finishes in a ``Cached`` state without computing. Caching is the
manifests' (content hashes, :mod:`tasks.engine.manifest`), not Prefect's, so the CLI, DVC and Prefect
agree on what is current.

``torch.func.jvp`` keeps PyTorch's forward-mode AD level in process-global state, so two threads
inside jvp at once corrupt each other; the thread task runner runs steps in threads, so nodes
that use jvp (the linearized PBRF, curvature products) take a process-wide lock here.

On an accelerator every node also takes that device's lock, so nodes run there one at a time:
the device's memory then holds one node's computation — one shard of one variant's removals for
retraining (``retrain.shards``) — instead of every variant's at once.

On Dask, use worker processes with one thread each (the forward-AD lock then never waits).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

_FORWARD_AD = threading.Lock()
_DEVICES: dict[str, threading.Lock] = {}
_DEVICES_GUARD = threading.Lock()


def node_locks(device: str, forward_ad: bool) -> list[threading.Lock]:
    """The locks a node takes, always in this order: its accelerator's, then forward-mode AD's."""
    locks = []
    if device != "cpu":
        key = "cuda:0" if device == "cuda" else device
        with _DEVICES_GUARD:
            locks.append(_DEVICES.setdefault(key, threading.Lock()))
    if forward_ad:
        locks.append(_FORWARD_AD)
    return locks


def run_node_here(
    root: str, config: dict[str, Any], node_id: str, force: bool = False, threads: int | None = None
) -> Any:
    """Run or reuse ``node_id``; ``threads`` sets torch's intra-op threads where this runs (a
    Dask worker process does not inherit the flow process's setting)."""
    import torch

    from pbrf.study.config import StudyConfig
    from tasks.engine.plan import build_plan
    from tasks.engine.runner import run_node

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cfg = StudyConfig.model_validate(config)
    plan = build_plan(config)
    with ExitStack() as held:
        for lock in node_locks(cfg.device, plan[node_id].forward_ad):
            held.enter_context(lock)
        result = run_node(root, cfg, node_id, plan=plan, force=force)
    if result.state == "Cached":
        return Completed(name="Cached", message="outputs current", data=result.as_dict())
    return result.as_dict()


# The task wraps a module-level function, so Dask pickles it by reference (a worker imports this
# module, with its own lock) instead of by value (which would try to pickle the lock).
run_node_task = task(
    name="node", task_run_name="{node_id}", cache_policy=NO_CACHE, persist_result=False
)(run_node_here)


def warm_up() -> None:
    """Parse in this thread what tasks would otherwise parse concurrently: CPython 3.11's AST
    constructor is not thread-safe (two threads in ``ast.parse`` can raise ``SystemError: AST
    constructor recursion depth mismatch``). The step modules' import closures (code hashes)
    and torch's forward-mode decompositions (TorchScript-compiled on the first ``jvp``)."""
    from tasks.engine.codehash import code_hash
    from tasks.registry import STEPS

    for step in STEPS.values():
        code_hash(step.function)
    import torch._decomp.decompositions_for_jvp  # noqa: F401
