"""DVC: dvc.yaml agrees with the step definitions, and a fresh clone reproduces offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_fixtures import tiny_set_args

from pbrf.config import StudyConfig
from pbrf.presets import DEFAULT_PRESET, load_preset
from tasks.fingerprint import STEP_KEYS, STEPS
from tasks.layout import RunLayout

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def _plain(entries: list | None) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def test_dvc_stages_mirror_the_steps() -> None:
    stages = _stages()
    assert list(stages) == list(STEPS)
    layout = RunLayout("artifacts")
    cfg = load_preset(DEFAULT_PRESET)
    for step, stage in stages.items():
        assert stage["params"] == list(STEP_KEYS[step]), step
        assert stage["cmd"].startswith(f"pbrf step {step} ")
        deps = set(stage["deps"])
        assert {"pbrf", "tasks"} <= deps
        for path in layout.inputs(step, cfg, "cold"):  # every input file lies under a dep
            assert any(path.as_posix().startswith(f"{d}/") for d in deps), (step, path)
        outs = [o.replace("${item}", "cold") for o in _plain(stage["outs"])]
        for path in layout.outputs(step, "cold"):
            assert any(path.as_posix().startswith(f"{o}/") or path.as_posix() == o
                       for o in [*outs, *_plain(stage.get("metrics")), *_plain(stage.get("plots"))]
                       ), (step, path)  # fmt: skip


def test_params_yaml_is_the_default_preset() -> None:
    cfg = StudyConfig.model_validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert cfg == load_preset(DEFAULT_PRESET)


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{out}"
    return out


@pytest.mark.skipif(DVC is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_repro_in_a_fresh_clone(tmp_path: Path) -> None:
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
    # what a clone holds: the tracked files, no DVC cache, no data/, no artifacts/
    for name in ("dvc.yaml", "data.dvc", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(REPO / ".dvc" / name, repo / ".dvc" / name)
    for pkg in ("pbrf", "tasks"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "init.defaultBranch=main"]
    _sh([*git, "init", "-q"], repo, env)
    pbrf = str(BIN / "pbrf")
    _sh([pbrf, "params", DEFAULT_PRESET, *tiny_set_args(), "--set", "retrain.variants=[cold,warm]",
         "-o", "params.yaml"], repo, env)  # fmt: skip
    _sh([*git, "add", "-A"], repo, env)
    _sh([*git, "commit", "-qm", "clone"], repo, env)

    # the README's commands
    _sh([pbrf, "data", "export", "data"], repo, env)
    status = _sh([DVC, "status", "data.dvc"], repo, env)
    assert "modified" not in status  # the export reproduces data.dvc's md5 exactly
    out = _sh([DVC, "repro"], repo, env)
    assert "Running stage 'report'" in out and "Running stage 'retrain@warm'" in out
    assert (repo / "artifacts" / "report" / "report.md").is_file()

    assert "Data and pipelines are up to date" in _sh([DVC, "status"], repo, env)
    assert "gaps.warm_start.mean" in _sh([DVC, "metrics", "show"], repo, env)
    again = _sh([DVC, "repro"], repo, env)
    assert "Running stage" not in again and "didn't change, skipping" in again
    changed = _sh([*git, "status", "--porcelain"], repo, env).split("\n")
    assert not [line for line in changed if line.strip() and "dvc.lock" not in line], changed
