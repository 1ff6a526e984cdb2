"""``dvc repro`` runs the generated stages; a parameter change invalidates exactly its readers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_root import REPO

pytestmark = pytest.mark.slow  # dvc repro in a fresh git repository

BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{out}"
    return out


@pytest.mark.skipif(DVC is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_repro_in_a_fresh_clone_and_damping_reaches_only_its_readers(tmp_path: Path) -> None:
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
    # what a clone holds: the tracked files, no DVC cache, no artifacts/
    for name in (".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    for pkg in ("pbrf", "tasks"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "init.defaultBranch=main"]
    _sh([*git, "init", "-q"], repo, env)
    pbrf = str(BIN / "pbrf")
    variants = "retrain.variants=[cold,warm,proximal,pbrf]"
    _sh(
        [pbrf, "params", "digits-mlp", "--scale", "smoke", "--set", variants, "-o", "params.yaml"],
        repo,
        env,
    )
    _sh([pbrf, "dvc"], repo, env)
    _sh([*git, "add", "-A"], repo, env)
    _sh([*git, "commit", "-qm", "clone"], repo, env)

    out = _sh([DVC, "repro"], repo, env)
    assert "Running stage 'report'" in out and "Running stage 'retrain-pbrf'" in out
    report = (repo / "artifacts" / "report" / "report.md").read_text()
    assert (
        "## Gaps (Table 5)" in report and "## Test-loss change: influence vs retraining" in report
    )
    assert "Data and pipelines are up to date" in _sh([DVC, "status"], repo, env)
    assert "gaps.warm_start.mean" in _sh([DVC, "metrics", "show"], repo, env)
    again = _sh([DVC, "repro"], repo, env)
    assert "Running stage" not in again
    # the README's dvc.lock policy: commit dvc.lock with the git-tracked metrics it produced
    _sh([*git, "add", "dvc.lock", "artifacts/report/metrics.json"], repo, env)
    _sh([*git, "commit", "-qm", "baseline"], repo, env)
    assert "artifacts/report/metrics.json" in _sh([*git, "ls-files"], repo, env)
    plots = json.loads(_sh([DVC, "plots", "show", "--json"], repo, env))["data"]
    cold = plots["influence_vs_cold"][0]["content"]
    assert cold["title"]["text"] == "Figure 1: influence prediction vs Cold-Start (LOO) retraining"
    assert cold["encoding"]["y"]["title"] == "Cold-Start (LOO): actual test-loss change"

    params = (repo / "params.yaml").read_text().replace("damping: 0.001", "damping: 0.01")
    (repo / "params.yaml").write_text(params)
    # exactly the stages that read damping are stale; what follows them reruns only if their
    # outputs change (DVC compares the new outs' hashes)
    status = json.loads(_sh([DVC, "status", "--json"], repo, env))
    assert set(status) == {"retrain-proximal", "retrain-pbrf", "influence"}, status

    # an experiment beside the committed baseline: both columns hold numbers, and
    # `dvc metrics diff` reads HEAD's metrics
    _sh([DVC, "exp", "run", "-n", "damping-0.01"], repo, env)
    import io

    import pandas as pd

    table = pd.read_csv(io.StringIO(_sh([DVC, "exp", "show", "--csv"], repo, env)))
    col = "gaps.proximity.mean"
    rows = table.set_index("Experiment")[col] if "Experiment" in table else None
    assert rows is not None and "damping-0.01" in rows.index, table.to_string()
    values = pd.to_numeric(table[col], errors="coerce")
    assert values.notna().all(), table[["Experiment", "rev", col]].to_string()
    assert values.nunique() == 2  # baseline and experiment differ
    diff = json.loads(_sh([DVC, "metrics", "diff", "--json"], repo, env))
    changed = diff["artifacts/report/metrics.json"]
    assert changed[col]["old"] is not None and changed[col]["new"] != changed[col]["old"]
