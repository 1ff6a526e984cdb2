"""A real Prefect server on 127.0.0.1: `pbrf serve` registers the deployments, a run triggered
through the API with custom parameters completes and its artifacts read back; the same study on a
2-worker Dask LocalCluster writes the tables the default runner writes.

The module starts `prefect server start` (UI off, analytics off, a private PREFECT_HOME) and
`pbrf serve`, and stops both on every exit path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from repo_root import REPO

BIN = Path(sys.executable).parent
PREFECT = shutil.which("prefect", path=str(BIN))
PBRF = shutil.which("pbrf", path=str(BIN))
SMALL = {"retrain.variants": ["cold", "warm", "proximal"], "select.num_removals": 4}

pytestmark = [
    pytest.mark.skipif(PREFECT is None or PBRF is None, reason="needs prefect and pbrf"),
    pytest.mark.slow,  # a real Prefect server and pbrf subprocesses
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(what: str, check, deadline_s: float, proc: subprocess.Popen | None = None) -> Any:
    """``check()`` until it returns something truthy, within ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {deadline_s:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 (closed below)
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _poll("prefect server", lambda: _healthy(url), 240, proc)
        yield {**env, "PREFECT_API_URL": url}
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def api(server: dict[str, str]) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server["PREFECT_API_URL"]}):
        yield
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()  # nothing may be left to send once this server stops


async def _deployments() -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {d.name: d for d in await client.read_deployments()}


async def _wait_run(flow_run_id, deadline_s: float) -> Any:
    from prefect.client.orchestration import get_client

    end = time.monotonic() + deadline_s
    async with get_client() as client:
        while time.monotonic() < end:
            run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            await asyncio.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish within {deadline_s:.0f} s")


async def _artifact(flow_run_id, key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    assert found, f"no artifact {key!r} for flow run {flow_run_id}"
    return found[0]


def test_ui_run_of_a_served_deployment_with_custom_parameters(
    server: dict[str, str], api: None, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    serve = subprocess.Popen(
        [PBRF, "serve", "--nightly", "digits-mlp:smoke", "--cron", "30 2 * * *"],
        cwd=tmp_path,
        env={**server, "PBRF_THREADS": "1", "PBRF_PROGRESS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
    )
    try:
        deps = _poll(
            "deployments",
            lambda: (d := asyncio.run(_deployments())) and len(d) >= 2 and d,
            240,
            serve,
        )
        assert set(deps) >= {"decomposition", "nightly-digits-mlp-smoke"}
        form = deps["decomposition"].parameter_openapi_schema
        fields = form["definitions"]["DecompositionParams"]["properties"]
        assert {"preset", "scale", "overrides", "drift_check"} <= set(fields)
        nightly = deps["nightly-digits-mlp-smoke"]
        assert [s.schedule.cron for s in nightly.schedules] == ["30 2 * * *"]
        assert nightly.parameters["params"]["drift_check"] is True

        out = tmp_path / "ui-run"
        params = {"preset": "digits-mlp", "scale": "smoke", "overrides": SMALL, "out": str(out)}
        created = run_deployment(
            "decomposition/decomposition", parameters={"params": params}, timeout=0
        )
        run = asyncio.run(_wait_run(created.id, 600))
        log = (tmp_path / "serve.log").read_text()[-3000:]
        assert run.state.type.value == "COMPLETED", f"{run.state}\n{log}"
        assert run.name.startswith(f"digits-mlp-smoke-{dt.date.today():%Y-%m-%d}")

        table = json.loads(
            asyncio.run(_artifact(run.id, "digits-mlp-smoke-decomposition-table5-gaps")).data
        )
        assert "warm_start" in {r["Gap"] for r in table}
        assert all(r["n"] == 4 for r in table)  # the custom select.num_removals reached the run
        for r in table:  # rounded to the interval: at most a few significant digits
            assert all(len(repr(r[k])) <= 12 for k in ("Mean", "CI low", "CI high"))
        report = asyncio.run(_artifact(run.id, "digits-mlp-smoke-decomposition-report"))
        assert str(report.data).count("](data:image/png;base64,") == 2  # both figures inline
        written = (out / "report" / "report.md").read_text()  # the published report, as linked
        assert "## Gaps (Table 5)" in written and "M = 4 removals" in written
    finally:
        _stop(serve)


def test_dask_local_cluster_writes_the_tables_of_the_default_runner(
    server: dict[str, str], tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    env = {**server, "PBRF_THREADS": "1", "PBRF_PROGRESS": "0"}
    sets = ["retrain.variants=[warm,proximal,linearized_pbrf]", "select.num_removals=4"]
    sets.append("retrain.shards=2")  # each variant's removals as two tasks

    def run(out: Path, *extra: str) -> float:
        argv = [PBRF, "run", "digits-mlp", "--scale", "smoke", "--out", str(out), *extra]
        for item in sets:
            argv += ["--set", item]
        t0 = time.perf_counter()
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - t0
        assert res.returncode == 0, res.stderr[-3000:]
        assert "retrain-linearized_pbrf-2of2" in res.stdout
        ui = server["PREFECT_API_URL"].removesuffix("/api")
        assert f"Prefect UI: {ui}/runs/flow-run/" in res.stdout  # the run's page on this server
        return seconds

    def nodes(out: Path) -> list[Path]:
        return list((out / ".pbrf" / "nodes").glob("*.json"))

    local = run(tmp_path / "local")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        with distributed.Client(address) as client, distributed.get_task_stream(client) as stream:
            dask = run(tmp_path / "dask", "--dask-address", address)
    executed = stream.data  # what the (otherwise idle) cluster ran meanwhile
    assert len(executed) == len(nodes(tmp_path / "dask")), [t["key"] for t in executed]
    assert len({t["worker"] for t in executed}) == 2  # on both workers
    print(f"\nsmoke study via `pbrf run`: default runner {local:.1f} s, 2-worker Dask {dask:.1f} s")
    for name in ("gaps", "correlations", "test_loss_changes", "gaps_per_removal"):
        a = pd.read_parquet(tmp_path / "local" / "aggregate" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "dask" / "aggregate" / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# The names Prefect's UI offers in its state filter; its default for a deployment's Runs tab,
# "All except scheduled", is all of them but Scheduled (the UI filters by state *name*).
UI_STATE_NAMES = [
    "Late", "Resuming", "AwaitingRetry", "AwaitingConcurrencySlot", "Pending", "Paused",
    "Suspended", "Running", "Retrying", "Completed", "Cached", "Cancelled", "Cancelling",
    "Crashed", "Failed", "TimedOut",
]  # fmt: skip


def _ui_default_runs(server: dict[str, str], deployment_id: str) -> list[dict[str, Any]]:
    """The flow runs a deployment's Runs tab lists under the UI's default filter (its API query)."""
    body = {
        "flow_runs": {"state": {"name": {"any_": UI_STATE_NAMES}}},
        "deployments": {"id": {"any_": [deployment_id]}},
        "sort": "START_TIME_DESC",
        "limit": 50,
    }
    request = urllib.request.Request(
        f"{server['PREFECT_API_URL']}/flow_runs/filter",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def test_a_drifted_nightly_is_listed_by_the_ui_default_filter_and_not_green(
    server: dict[str, str], api: None, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    serve = subprocess.Popen(
        [PBRF, "serve", "--nightly", "digits-mlp:smoke", "--cron", "30 2 * * *"],
        cwd=tmp_path,
        env={
            **server,
            "PBRF_THREADS": "1",
            "PBRF_PROGRESS": "0",
            "PBRF_HISTORY": str(tmp_path / "history"),
        },
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
    )
    try:
        deps = _poll(
            "deployments",
            lambda: (d := asyncio.run(_deployments())) and "nightly-digits-mlp-smoke" in d and d,
            240,
            serve,
        )
        nightly = deps["nightly-digits-mlp-smoke"]
        base = {**nightly.parameters["params"], "out": str(tmp_path / "nightly")}
        small = {"retrain.variants": ["warm", "proximal"], "select.num_removals": 4}
        states = []
        for overrides in (small, {**small, "damping": 0.01}):
            created = run_deployment(
                "decomposition/nightly-digits-mlp-smoke",
                parameters={"params": {**base, "overrides": overrides}},
                timeout=0,
            )
            states.append(asyncio.run(_wait_run(created.id, 600)))
        first, drifted = states
        log = (tmp_path / "serve.log").read_text()[-3000:]
        assert first.state.type.value == "COMPLETED", f"{first.state}\n{log}"
        assert drifted.state.message.startswith("Drifted: "), f"{drifted.state}\n{log}"
        listed = {r["id"]: r for r in _ui_default_runs(server, str(nightly.id))}
        assert str(drifted.id) in listed and str(first.id) in listed, list(listed)
        assert listed[str(drifted.id)]["state_type"] not in ("COMPLETED", "SCHEDULED")
        artifact = asyncio.run(_artifact(drifted.id, "digits-mlp-smoke-decomposition-drift"))
        assert f"Baseline: **{first.name}**" in str(artifact.data)
    finally:
        _stop(serve)
