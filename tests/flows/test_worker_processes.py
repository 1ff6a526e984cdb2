"""A CPU study's nodes in worker processes: when ``pbrf run`` uses them, in what order nodes are
submitted, that a step's errors cross the process boundary intact, and that the outputs equal a
run of threads."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pipeline_fixtures import smoke_config
from repo_root import REPO

from flows.runners import (
    PROCESS_MIN_SECONDS,
    local_workers,
    submission_order,
    task_runner,
)
from pbrf.data.errors import DataFilesMissingError, MalformedDataError
from pbrf.solvers.errors import LissaDivergenceError
from pbrf.trainer import NonFiniteLossError
from tasks.engine.artifacts import CorruptArtifactError, MissingArtifactError, WriteError
from tasks.engine.config_view import UndeclaredConfigRead
from tasks.engine.plan import build_plan


def test_cpu_studies_of_a_minute_or_more_get_one_process_per_core(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert local_workers("cpu", 8, PROCESS_MIN_SECONDS) == 2
    assert local_workers("cpu", 1, 3600.0) == 1  # one node at a time: no pool to gain from
    assert local_workers("cpu", 8, PROCESS_MIN_SECONDS - 1) == 0  # a smoke run: threads
    assert local_workers("cuda", 8, 3600.0) == 0  # GPU nodes share the device's lock
    assert local_workers("cuda", 8, 0.0, requested=3) == 3
    with pytest.raises(ValueError, match="--workers must be ≥ 0"):
        local_workers("cpu", 8, 0.0, requested=-1)
    assert type(task_runner(workers=2)).__name__ == "StudyProcessPool"  # masked spawns
    assert type(task_runner(workers=1)).__name__ == "ThreadPoolTaskRunner"


def test_influence_is_submitted_right_after_its_inputs_and_the_order_stays_topological() -> None:
    plan = build_plan(smoke_config().model_dump(mode="json"))
    order = submission_order(plan)
    assert sorted(n.id for n in order) == sorted(plan.nodes)
    position = {n.id: i for i, n in enumerate(order)}
    for node in order:
        assert all(position[u] < position[node.id] for u in node.upstream), node.id
    influence = position["influence"]
    assert influence == max(position[u] for u in plan["influence"].upstream) + 1
    assert all(influence < position[n.id] for n in plan if n.step == "retrain")


@pytest.mark.parametrize(
    "error",
    [
        NonFiniteLossError("retrain warm", 3, [0, 2], 0.1),
        NonFiniteLossError("base training", 7, [0], None),
        DataFilesMissingError("mnist", "/data", [Path("/data/a"), Path("/data/b")]),
        MalformedDataError("/data/x.csv", "not a number", row=3, column="age"),
        MissingArtifactError("/r/base/theta.pt", "train_base", "missing"),
        CorruptArtifactError("/r/x.parquet", "select", "unreadable"),
        WriteError("/r/out.pt", OSError(28, "No space left on device")),
        UndeclaredConfigRead("retrain", "train.epochs"),
        LissaDivergenceError(
            step=5,
            depth=10,
            repeat=0,
            ratio=9.0,
            bound=4.0,
            scale=1.5,
            damping=0.01,
            top_eigenvalue=1.0,
            rhs=(1,),
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_steps_error_crosses_a_process_boundary_intact(error: Exception) -> None:
    """A worker process returns a failed step's exception pickled: the parent must get the
    same type, message and attributes (the CLI's one-line messages read them)."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert {k: repr(v) for k, v in vars(back).items()} == {
        k: repr(v) for k, v in vars(error).items()
    }
    assert vars(back)


def _run(out: Path, workers: int) -> subprocess.CompletedProcess[str]:
    argv = ["run", "digits-mlp", "--scale", "smoke", "--workers", str(workers), "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PBRF_THREADS": "1",
             "HOME": str(out.parent), "PREFECT_HOME": str(out.parent / "prefect")},
        timeout=900,
    )  # fmt: skip


@pytest.mark.slow
def test_worker_processes_write_the_tables_a_run_of_threads_writes(tmp_path: Path) -> None:
    procs, threads = tmp_path / "processes", tmp_path / "threads"
    for out, workers in ((procs, 2), (threads, 0)):
        done = _run(out, workers)
        assert done.returncode == 0, done.stderr
    tables = sorted(p.relative_to(procs) for p in procs.rglob("*.parquet"))
    assert tables and tables == sorted(p.relative_to(threads) for p in threads.rglob("*.parquet"))
    for rel in tables:
        if rel.parts[0] == "report":
            continue  # run-specific timings
        a, b = pd.read_parquet(procs / rel), pd.read_parquet(threads / rel)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=str(rel))


def test_a_negative_worker_count_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    argv = ["run", "digits-mlp", "--scale", "smoke", "--workers", "-1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--workers must be ≥ 0, got -1" in capsys.readouterr().err
