"""Where the flow's tasks run, and how GPU tasks are placed.

* No address: Prefect's default ``ThreadPoolTaskRunner`` in the flow's process.
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


def task_runner(address: str | None = None, *, max_workers: int = 8):
    """A Dask task runner for ``address`` (or ``$PBRF_DASK_ADDRESS``), else a thread pool."""
    address = dask_address(address)
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers)


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
