"""``pbrf sweep`` on the command line: one-line errors (exit 2), the sweep list, and the DVC
form — ``dvc repro`` runs one stage per point, a second repro runs nothing, and one more grid
value adds one stage whose shared nodes are reused (smoke, about 60 s on 2 cores)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_root import REPO

from flows.cli import main
from tasks.sweeps.collect import read_sweep_table

BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sweep", "fig5-damping", "--scale", "huge"], "has no scale 'huge'"),
        (["sweep", "no-such"], "unknown preset 'no-such'"),
        (["sweep", "digits-mlp"], "is a study preset, not a sweep"),
        (["sweep", "fig5-damping", "--grid", "damping=0.1"], "give a YAML list"),
        (
            ["sweep", "fig5-damping", "--grid", "damping=[0.1,-1]"],
            "grid point damping_-1: invalid configuration — damping: Input should be greater",
        ),
        (
            ["sweep", "digits-mlp", "--scale", "smoke", "--grid", "select.fraction=[0.5]"],
            "select.draws='independent'",
        ),
        (["sweep", "fig5-damping", "--point", "damping_7"], "--point damping_7: no such"),
        (["sweep"], "name a sweep"),
    ],
)
def test_sweep_errors_exit_2_with_one_line(argv, needle, capsys) -> None:
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("pbrf: error:") and needle in line, line


def test_sweeps_lists_every_sweep(capsys) -> None:
    from pbrf.study.sweeps import SWEEPS

    assert main(["sweeps"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SWEEPS) and "retrain.pbrf.epochs" in out
    assert main(["sweeps", "--names"]) == 0
    assert capsys.readouterr().out.split() == list(SWEEPS)


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{out}"
    return out


@pytest.mark.slow
@pytest.mark.skipif(DVC is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_sweep_runs_each_point_once_and_extends_by_one_stage(tmp_path: Path) -> None:
    repo = tmp_path / "clone"
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "PBRF_THREADS": "1",
        "PBRF_PROGRESS": "0",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for name in (".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    for pkg in ("pbrf", "tasks"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "init.defaultBranch=main"]
    _sh([*git, "init", "-q"], repo, env)
    pbrf = str(BIN / "pbrf")
    gen = [pbrf, "sweep", "fig5-damping", "--scale", "smoke", "--dvc", "sweeps/damping"]
    gen += ["--set", "retrain.variants=[warm,proximal]", "--out", "runs/sweeps/damping"]
    _sh([*gen, "--grid", "damping=[0.1,0.001]"], repo, env)
    _sh([*git, "add", "-A"], repo, env)
    _sh([*git, "commit", "-qm", "sweep"], repo, env)
    dvc_file = "sweeps/damping/dvc.yaml"

    out = _sh([DVC, "repro", dvc_file], repo, env)
    assert "Running stage 'sweeps/damping/dvc.yaml:point-damping_0p001'" in out
    assert "train_base: Reused from damping_0p1" in out  # the second point links the base
    rows = read_sweep_table(repo / "runs" / "sweeps" / "damping")  # provenance and schema
    gaps = rows[rows["quantity"] == "gap"]
    assert set(gaps["key"]) == {"damping"} and sorted(set(gaps["value"])) == [0.001, 0.1]
    assert gaps["estimate"].notna().all()
    assert gaps[gaps["term"] == "proximity"]["estimate"].nunique() == 2  # damping reached it
    assert "Running stage" not in _sh([DVC, "repro", dvc_file], repo, env)

    _sh([*gen, "--grid", "damping=[0.1,0.01,0.001]"], repo, env)
    status = json.loads(_sh([DVC, "status", "--json", dvc_file], repo, env))
    assert set(status) == {
        "sweeps/damping/dvc.yaml:point-damping_0p01",
        "sweeps/damping/dvc.yaml:collect",
    }, status
    out = _sh([DVC, "repro", dvc_file], repo, env)
    assert "damping_0p01/train_base: Reused" in out and "damping_0p1/" not in out
    assert "damping_0p01/retrain-proximal: Completed" in out


def test_a_serial_sweep_refuses_a_sweep_directory_another_process_writes(
    tmp_path: Path, capsys
) -> None:
    from tasks.engine.lock import run_lock

    out = tmp_path / "sweep"
    argv = ["sweep", "fig5-damping", "--scale", "smoke", "--serial", "--out", str(out)]
    with run_lock(out):  # this process holds it, as a running `pbrf sweep` would
        assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out} is being written by pid {os.getpid()}" in err[0], err
    assert not (out / "points").exists()  # nothing was written
