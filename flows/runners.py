"""Where the flow's tasks run, and how GPU tasks are placed.

* ``workers > 1`` (what ``pbrf run`` picks for a CPU study, ``--workers``): a
  ``ProcessPoolTaskRunner`` of that many worker processes, one node at a time each. The models
  of the tabular rows are small, so a step spends much of its time in Python dispatching small
  ops; as threads of one process the nodes share one interpreter lock and the forward-mode AD
  lock (:mod:`flows.prefect_tasks`), as processes they run in parallel (``concrete-mlp``:
  6.4 → 4.3 min end to end on 2 cores). Workers ignore Ctrl-C, die with ``pbrf`` and are killed
  by its interrupt handling (:mod:`flows.lifetime`).
* Otherwise, with no address: Prefect's ``ThreadPoolTaskRunner`` in the flow's process (the
  default of the flows, and of GPU studies: their nodes share the device through a lock).
* ``PBRF_DASK_ADDRESS=tcp://host:8786`` (or ``pbrf run --dask-address``, ``pbrf serve
  --dask-address``): a ``prefect_dask.DaskTaskRunner`` connected to that scheduler; each node is
  one Dask task. Workers must import this package and see the run directory at the same path
  (a shared file system); use worker *processes* with one thread each (``torch.func.jvp`` keeps
  process-global state, see :mod:`flows.prefect_tasks`).

GPU studies (``device: cuda…``): every node that computes on the device is tagged
:data:`GPU_TAG` — a Prefect tag concurrency limit on it (``prefect concurrency-limit create
pbrf-gpu N``) caps how many run at once — and, on Dask, asks for one unit of the worker resource
``GPU``, so a worker started with ``--resources GPU=1`` (and ``CUDA_VISIBLE_DEVICES`` set to its
device) runs one such node at a time on its own device.
"""

import contextlib
import os
from collections.abc import Iterator

DASK_ADDRESS_ENV = "PBRF_DASK_ADDRESS"
GPU_TAG = "pbrf-gpu"
GPU_RESOURCE = "GPU"
CPU_STEPS = frozenset({"prepare", "select", "report"})  # steps that never touch the device


def dask_address(address: str | None = None) -> str | None:
    """``address``, else ``$PBRF_DASK_ADDRESS``, else None (the thread pool)."""
    return address or os.environ.get(DASK_ADDRESS_ENV, "").strip() or None


def task_runner(address: str | None = None, *, max_workers: int = 8, workers: int = 0):
    """A Dask task runner for ``address`` (or ``$PBRF_DASK_ADDRESS``), else a pool of
    ``workers`` processes when ``workers > 1``, else a thread pool."""
    address = dask_address(address)
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    if workers > 1:
        from flows.lifetime import init_worker
        from flows.process_pool import StudyProcessPool

        return StudyProcessPool(
            max_workers=workers, initializer=init_worker, initargs=(os.getpid(),)
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers)


# below this much forecast training a study runs as threads: starting worker processes (each
# imports torch and Prefect, ≈ 10 s on 2 busy cores) costs more than it saves (smoke scales)
PROCESS_MIN_SECONDS = 60.0


def local_workers(device: str, parallel: int, seconds: float, requested: int | None = None) -> int:
    """Worker processes for a study run here: ``requested`` if given (0 or 1: threads), else
    for a CPU study with at least :data:`PROCESS_MIN_SECONDS` of forecast training one per
    core, at most ``parallel`` (the nodes that can run at once); a GPU study runs its nodes as
    threads (they take the device's lock in turn)."""
    if requested is not None:
        if requested < 0:
            raise ValueError(f"--workers must be ≥ 0, got {requested}")
        return requested
    if device != "cpu" or seconds < PROCESS_MIN_SECONDS:
        return 0
    return min(os.cpu_count() or 1, max(1, parallel))


def submission_order(plan) -> list:
    """The plan's nodes in an order a pool with fewer workers than ready nodes finishes soonest
    in: topological, with the ``influence`` node — one long serial LiSSA run — moved up to just
    after its last upstream node, so it starts beside the retraining instead of after it."""
    order = list(plan)
    ids = [n.id for n in order]
    for node in [n for n in order if n.step == "influence"]:
        order.remove(node)
        ids = [n.id for n in order]
        after = max((ids.index(u) for u in node.upstream), default=-1)
        order.insert(after + 1, node)
    return order


def head_start(plan, futures: dict, *, seconds: float = 0.5) -> None:
    """Before the first retraining node is submitted to a process pool, wait until the influence
    node's inputs are done and give it ``seconds`` to reach the pool's queue: the pool runs
    tasks in the order they become ready, and the retraining that needs only θˢ would otherwise
    fill the workers first and leave the long LiSSA run for last (``concrete-mlp``: 305–315 s
    end to end that way)."""
    import time

    influence = [n for n in plan if n.step == "influence"]
    if not influence:
        return
    for upstream in influence[0].upstream:
        futures[upstream].wait()
    time.sleep(seconds)


def uses_gpu(device: str, step: str) -> bool:
    return device.startswith("cuda") and step not in CPU_STEPS


@contextlib.contextmanager
def placement(device: str, step: str, *, on_dask: bool) -> Iterator[None]:
    """Submit within this context: GPU nodes get the ``pbrf-gpu`` tag and one Dask ``GPU``."""
    if not uses_gpu(device, step):
        yield
        return
    from prefect import tags

    with contextlib.ExitStack() as stack:
        stack.enter_context(tags(GPU_TAG))
        if on_dask:
            import dask

            stack.enter_context(dask.annotate(resources={GPU_RESOURCE: 1}))
        yield


def is_dask(runner) -> bool:
    return type(runner).__module__.startswith("prefect_dask")


def dask_gpu_slots(runner) -> int:
    """How many ``GPU`` resource units the workers of a Dask task runner advertise (0 when the
    runner is not Dask). Without any, GPU nodes are not annotated: they would wait forever."""
    if not is_dask(runner):
        return 0
    workers = runner.client.scheduler_info(n_workers=-1).get("workers", {})
    return int(sum(w.get("resources", {}).get(GPU_RESOURCE, 0) for w in workers.values()))
