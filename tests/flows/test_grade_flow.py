"""The ``grade`` flow under ``prefect_test_harness``: every node a task with the registry's
edges, the estimators run one at a time after the decomposition (so their costs are their own),
the table published as an artifact, and ``pbrf grade`` reusing the finished nodes."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.grade import GradeParams, grade
from tasks.engine.plan import build_plan

pytestmark = pytest.mark.slow  # flows under prefect_test_harness

prefect_testing = pytest.importorskip("prefect.testing.utilities")

ESTIMATORS = ["exact", "tracin", "grad_dot"]
OVERRIDES = {"retrain.variants": ["cold", "pbrf"]}


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_testing.prefect_test_harness(server_startup_timeout=120):
        yield


async def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def test_grade_flow_isolates_estimators_and_publishes_the_table(
    harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grade"
    params = GradeParams(
        preset="digits-mlp",
        scale="smoke",
        estimators=ESTIMATORS,
        overrides=OVERRIDES,
        out=str(out),
    )
    state = grade(params, return_state=True)
    result = state.result()
    cfg, _ = params.config()
    plan = build_plan(cfg.model_dump(mode="json"))
    assert list(result["nodes"]) == list(plan.nodes)
    assert {v["state"] for v in result["nodes"].values()} == {"Completed"}

    runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
    names = {r.id: r.name for r in runs}
    edges = {
        r.name: {names[i.id] for i in r.task_inputs.get("wait_for", []) if i.id in names}
        for r in runs
    }
    assert edges == {n.id: set(n.upstream) for n in plan}
    span = {r.name: (r.start_time, r.end_time) for r in runs}
    estimates = [f"estimate-{n}" for n in ESTIMATORS]
    decomposition = [n for n in span if n not in estimates and n not in ("grade", "report")]
    last = max(span[n][1] for n in decomposition)
    starts = sorted((span[n][0], span[n][1]) for n in estimates)
    assert starts[0][0] >= last  # estimators start after the decomposition finished ...
    for (_, end), (start, _) in itertools.pairwise(starts):
        assert start >= end  # ... and run one at a time

    from prefect.artifacts import Artifact

    table = Artifact.get("digits-mlp-smoke-grade-grades")
    assert table is not None and all(n in str(table.data) for n in ESTIMATORS)
    assert Artifact.get("digits-mlp-smoke-grade-grading") is not None

    from flows.cli import main

    argv = ["grade", "digits-mlp", "--scale", "smoke", "--estimators", ",".join(ESTIMATORS)]
    argv += ["--set", "retrain.variants=[cold,pbrf]", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Spearman vs PBRF [95 % CI]" in text and "S vs LOO" in text
    assert all(re.search(rf"estimate-{n}\s+Cached", text) for n in ESTIMATORS)
