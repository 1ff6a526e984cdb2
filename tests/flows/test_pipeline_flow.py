"""The Prefect flow under ``prefect_test_harness``: every node a task, edges from the registry,
reuse by manifest, and the tables published as artifacts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_fixtures import smoke_config

from flows.decomposition import DecompositionParams, decomposition
from tasks.engine.plan import build_plan

pytestmark = pytest.mark.slow  # flows under prefect_test_harness

prefect_testing = pytest.importorskip("prefect.testing.utilities")

SMOKE_OVERRIDES = {"retrain.variants": ["cold", "warm", "proximal", "pbrf", "linearized_pbrf"]}


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_testing.prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow") / "smoke"


def _run(out: Path, **extra):
    params = DecompositionParams(
        preset="digits-mlp", scale="smoke", overrides={**SMOKE_OVERRIDES, **extra}, out=str(out)
    )
    state = decomposition(params, return_state=True)
    result = state.result()
    return state.state_details.flow_run_id, {k: v["state"] for k, v in result["nodes"].items()}


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


def test_flow_runs_every_node_with_the_registrys_edges(harness: None, out: Path) -> None:
    flow_run_id, states = _run(out)
    cfg = smoke_config(**{k.replace(".", "__"): v for k, v in SMOKE_OVERRIDES.items()})
    plan = build_plan(cfg.model_dump(mode="json"))
    assert list(states) == list(plan.nodes) and set(states.values()) == {"Completed"}
    edges = asyncio.run(_edges(flow_run_id))
    assert edges == {n.id: set(n.upstream) for n in plan}
    from prefect.artifacts import Artifact

    table5 = Artifact.get("digits-mlp-smoke-decomposition-table5-gaps")
    assert table5 is not None and "warm_start" in str(table5.data) and "CI low" in str(table5.data)
    assert Artifact.get("digits-mlp-smoke-decomposition-table2-correlations") is not None
    report = Artifact.get("digits-mlp-smoke-decomposition-report")
    assert report is not None and "Table 5" in str(report.data)


def test_rerun_is_cached_and_a_damping_change_reruns_only_what_reads_it(
    harness: None, out: Path
) -> None:
    _run(out)
    _, states = _run(out)
    assert set(states.values()) == {"Cached"}
    _, states = _run(out, damping=0.01)
    ran = {k for k, v in states.items() if v == "Completed"}
    assert ran == {
        "retrain-proximal",
        "retrain-pbrf",
        "retrain-linearized_pbrf",
        "influence",
        "aggregate",
        "report",
    }


def test_cli_run_prints_the_summary_with_intervals(
    harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    argv = ["run", "digits-mlp", "--scale", "smoke", "--out", str(tmp_path / "cli")]
    argv += ["--set", "retrain.variants=[cold,warm,pbrf]"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "retrain-pbrf" in out and "gap (Table 5)" in out and "95 % CI" in out
    assert "horizon: pbrf (matched)" in out
    # a flipped bit in a finished checkpoint: the rerun recomputes that node and says so
    damaged = tmp_path / "cli" / "retrain" / "warm" / "shard-0" / "delta.pt"
    data = bytearray(damaged.read_bytes())
    data[-200] ^= 0x01
    damaged.write_bytes(bytes(data))
    # --strict turns the warnings of this tiny run (PBRF still falling) into exit 1
    assert main([*argv, "--strict"]) == 1
    err = capsys.readouterr().err
    assert (
        "pbrf: retrain-warm: output retrain/warm/shard-0/delta.pt changed on disk (content "
        "hash mismatch); recomputed" in err
    ), err


def test_drift_check_passes_a_rerun_and_flags_a_perturbed_setting(
    harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    monkeypatch.setenv("PBRF_HISTORY", str(tmp_path / "history"))
    overrides = {"retrain.variants": ["warm", "proximal"]}

    def nightly(accept_baseline: bool = False, **extra):
        params = DecompositionParams(
            preset="digits-mlp",
            scale="smoke",
            overrides={**overrides, **extra},
            out=str(tmp_path / "run"),
            drift_check=True,
            accept_baseline=accept_baseline,
        )
        return decomposition(params, return_state=True)

    first = nightly()
    assert first.name == "Completed" and "first run of digits-mlp-smoke" in first.message
    again = nightly()  # same code and config: bit-identical tables
    assert again.name == "Completed" and again.message.startswith(
        "no drift vs baseline digits-mlp-smoke"
    )
    assert again.result()["drift"]["moved"] == []
    perturbed = nightly(damping=0.01)
    # Failed with the standard name: listed by the UI's name filter, red, not green
    assert perturbed.type.value == "FAILED" and perturbed.name == "Failed", perturbed
    assert perturbed.message.startswith("Drifted: "), perturbed.message
    assert "gap proximity" in perturbed.result(raise_on_failure=False)["drift"]["moved"]
    drift = Artifact.get("digits-mlp-smoke-decomposition-drift")
    assert drift is not None and "config.damping: 0.001 → 0.01" in str(drift.data)
    assert "**moved**" in str(drift.data) and "Baseline: **" in str(drift.data)
    baseline = str(drift.data).split("Baseline: **", 1)[1].split("**", 1)[0]
    from tasks.reports.history import read_records

    records = read_records(tmp_path / "history", "digits-mlp-smoke")
    assert baseline == records[1]["run_name"]  # the clean rerun, the last accepted run
    # the drifted run is not the baseline: the next ordinary nightly is clean
    after = nightly()
    assert after.name == "Completed" and "no drift vs baseline" in after.message, after.message
    # accepting a changed setting makes it the baseline of the runs that follow
    accepted = nightly(damping=0.01, accept_baseline=True)
    assert accepted.type.value == "FAILED" and "accepted as the new baseline" in accepted.message
    assert nightly(damping=0.01).name == "Completed"
    assert nightly().type.value == "FAILED"  # back to the old setting: drift from the new one
    assert len(list((tmp_path / "history" / "digits-mlp-smoke").glob("*.json"))) == 7
