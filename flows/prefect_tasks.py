"""The one Prefect task: run (or reuse) a node of the plan.

Every node of every flow (decomposition, grade, sweep, hessian comparison) runs through
:func:`run_node_task`, named after its node (``retrain-pbrf``, or ``<point>/<node>`` in a
sweep), with one locking policy; a node whose manifest is current finishes in a ``Cached``
state without computing. The flow validates the config and builds the plan once and binds them
into the node's work (no re-validation per node). Caching is the
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
from collections.abc import Callable
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
    label: str,
    work: Callable[[], Any],
    device: str,
    forward_ad: bool,
    threads: int | None = None,
) -> Any:
    """Run ``work`` — a picklable call that runs or reuses one node and returns its result
    (:func:`tasks.engine.runner.run_node` or :func:`tasks.sweeps.points.run_sweep_node`, bound
    with :func:`functools.partial` to the validated config and plan) — under the node's locks.

    ``threads`` sets torch's intra-op threads where this runs (a Dask worker process does not
    inherit the flow process's setting). A result in any state but ``Completed`` (``Cached``,
    ``Reused``, ``Diverged``, ``Skipped``) finishes the task in a completed state of that name,
    with the result as its data, so the flow goes on."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with ExitStack() as held:
        for lock in node_locks(device, forward_ad):
            held.enter_context(lock)
        result = work()
    record = result.as_dict()
    if result.state != "Completed":
        message = getattr(result, "message", "") or (
            f"from {result.source}" if getattr(result, "source", None) else "outputs current"
        )
        return Completed(name=result.state, message=message, data=record)
    return record


def submit_node(
    label: str,
    work: Callable[[], Any],
    *,
    device: str,
    forward_ad: bool,
    threads: int | None = None,
    wait_for: list[Any] = (),  # type: ignore[assignment]
) -> Any:
    """Submit one node as :data:`run_node_task` (the only node task of every flow)."""
    return run_node_task.submit(label, work, device, forward_ad, threads, wait_for=list(wait_for))


# The task wraps a module-level function, so Dask pickles it by reference (a worker imports this
# module, with its own lock) instead of by value (which would try to pickle the lock).
run_node_task = task(
    name="node", task_run_name="{label}", cache_policy=NO_CACHE, persist_result=False
)(run_node_here)


def warm_up() -> None:
    """Parse in this thread what tasks would otherwise parse concurrently: CPython 3.11's AST
    constructor is not thread-safe (two threads in ``ast.parse`` can raise ``SystemError: AST
    constructor recursion depth mismatch``). The step modules' import closures (code hashes)
    and torch's forward-mode decompositions (TorchScript-compiled on the first ``jvp``)."""
    from pbrf.estimators.registry import MODULES
    from tasks.engine.codehash import module_closure
    from tasks.registry import STEPS

    for module in [s.function.split(":")[0] for s in STEPS.values()] + list(MODULES.values()):
        module_closure(module)
    import torch._decomp.decompositions_for_jvp  # noqa: F401
