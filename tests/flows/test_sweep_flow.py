"""The Prefect ``sweep`` flow under ``prefect_test_harness``: one task per point and node,
shared nodes wait for (and link) the first point's, a rerun is all cached, and the tables are
published as artifacts (two smoke points, about 60 s on 2 cores with the harness start)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.sweep import SweepParams, sweep

pytestmark = pytest.mark.slow  # flows under prefect_test_harness

prefect_testing = pytest.importorskip("prefect.testing.utilities")

PARAMS = {
    "sweep": "fig5-damping",
    "scale": "smoke",
    "grid": {"damping": [0.1, 0.001]},
    "overrides": {"retrain.variants": ["warm", "proximal"]},
}


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_testing.prefect_test_harness(server_startup_timeout=120):
        yield


async def _edges(flow_run_id) -> dict[str, set[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    names = {r.id: r.name for r in runs}
    return {
        r.name: {names[i.id] for i in r.task_inputs.get("wait_for", []) if i.id in names}
        for r in runs
    }


def test_sweep_flow_shares_nodes_and_publishes_tables(harness: None, tmp_path: Path) -> None:
    params = SweepParams(**PARAMS, out=str(tmp_path / "sweep"))
    state = sweep(params, return_state=True)
    result = state.result()
    nodes = result["nodes"]
    a, b = "damping_0p1", "damping_0p001"
    assert nodes[f"{b}/train_base"]["state"] == "Reused"
    assert nodes[f"{b}/train_base"]["source"] == a
    assert nodes[f"{b}/retrain-proximal"]["state"] == "Completed"
    assert result["counts"]["Reused"] == 5 and result["collect"] == "Completed"
    edges = asyncio.run(_edges(state.state_details.flow_run_id))
    # the shared node waits for its own upstream and for the first point's copy
    assert edges[f"{b}/train_base"] == {f"{b}/prepare", f"{a}/train_base"}
    assert edges[f"{b}/retrain-proximal"] >= {f"{b}/train_base", f"{b}/select"}
    from prefect.artifacts import Artifact

    for key in ("summary", "table", "report"):
        art = Artifact.get(f"fig5-damping-smoke-{key}")
        assert art is not None and "proximity" in str(art.data).lower()

    again = sweep(params)
    assert {v["state"] for v in again["nodes"].values()} == {"Cached"}
    assert again["collect"] == "Cached"
