"""Task placement: GPU nodes carry the Prefect concurrency tag and ask a Dask scheduler for one
``GPU`` resource unit; CPU-only steps and CPU studies ask for nothing."""

from __future__ import annotations

import pytest

from flows.runners import GPU_TAG, dask_gpu_slots, placement, task_runner

distributed = pytest.importorskip("distributed")


def _inside(device: str, step: str, on_dask: bool) -> tuple[dict, set[str]]:
    import dask
    from prefect.context import TagsContext

    with placement(device, step, on_dask=on_dask):
        return dict(dask.get_annotations()), set(TagsContext.get().current_tags)


def test_placement_tags_and_annotates_only_gpu_nodes() -> None:
    assert _inside("cuda", "retrain", True) == ({"resources": {"GPU": 1}}, {GPU_TAG})
    assert _inside("cuda:1", "influence", False) == ({}, {GPU_TAG})  # thread pool: tag only
    assert _inside("cuda", "report", True) == ({}, set())
    assert _inside("cpu", "retrain", True) == ({}, set())


@pytest.mark.slow
def test_gpu_resources_reach_the_dask_scheduler() -> None:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        resources={"GPU": 1},
        dashboard_address=None,
    ) as cluster:
        with task_runner(cluster.scheduler_address) as runner:
            assert dask_gpu_slots(runner) == 2
            with placement("cuda", "retrain", on_dask=True):
                fut = runner.client.submit(sum, [1, 2], key="gpu-node")
            assert fut.result() == 3
            restrictions = runner.client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.tasks["gpu-node"].resource_restrictions
            )
        assert restrictions == {"GPU": 1}
        assert dask_gpu_slots(task_runner(None)) == 0  # the thread pool has no GPU slots
