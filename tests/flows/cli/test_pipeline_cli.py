"""The command line: one line and exit 2 for bad configuration, exit 1 naming the setting for
known failures, no torch import for ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_fixtures import smoke_config
from repo_root import REPO

from flows.cli import main
from tasks.engine import artifacts

SMOKE = ["--scale", "smoke"]


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_grid_where_every_scale_diverges_exits_1_naming_the_grid(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    sets = ["influence.solver.scale=grid", "influence.solver.scale_grid=[0.001, 0.002]"]
    argv = ["params", "digits-mlp", *SMOKE, *[a for s in sets for a in ("--set", s)]]
    assert main([*argv, "-o", str(params)]) == 0
    out = str(tmp_path / "a")
    for step in ("prepare", "train_base", "select"):
        assert main(["step", step, "--params", str(params), "--out", out]) == 0
    capsys.readouterr()
    assert main(["step", "influence", "--params", str(params), "--out", out]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "every scale of the grid {0.001, 0.002}" in line
    assert "influence.solver.scale_grid" in line


@pytest.mark.slow
def test_help_imports_neither_torch_nor_prefect() -> None:
    code = (
        "import sys\nfrom flows.cli.parser import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'prefect', 'pbrf', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_presets_lists_every_preset_with_its_scales(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-mlp", "cancer-lr", "diabetes-mlp"):
        assert name in out
    assert "smoke" in out


def test_params_writes_a_full_validated_config(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    assert main(["params", "digits-mlp", *SMOKE, "--set", "damping=0.01", "-o", str(path)]) == 0
    data = yaml.safe_load(path.read_text())
    assert data["damping"] == 0.01 and data["train"]["optimizer"]["name"] == "sgd"
    assert data["select"]["num_removals"] == 3


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["params", "--set", "damping=-1"], "damping: Input should be greater than 0"),
        (["params", "--set", "model.name=lenet"], "model.name=lenet cannot read data.name=digits"),
        (
            ["params", "--set", "train.optimizer=sgd", "--set", "train.momentum=0.9"],
            "train.momentum: Extra inputs are not permitted",
        ),
        (["params", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["params", "--scale", "huge"], "has no scale 'huge'"),
        (["params", "--set", "retrain.variants=[cold"], "not valid YAML"),
        (["params", "--set", "retrain.variants=[]"], "an empty study"),
        (["params", "--set", "train.lr"], "must look like key.path=value"),
        (["step", "prepare", "--params", "/nonexistent/params.yaml"], "parameter file"),
    ],
)
def test_config_errors_exit_2_with_one_line(argv, needle, capsys) -> None:
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("pbrf: error:") and needle in line, line


def test_step_runs_a_node_and_rejects_unknown_ones(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    assert main(["params", "digits-mlp", *SMOKE, "-o", str(params)]) == 0
    out = tmp_path / "artifacts"
    assert main(["step", "prepare", "--params", str(params), "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["node"] == "prepare" and record["state"] == "Completed"
    data = yaml.safe_load(params.read_text())["data"]
    ck = artifacts.load_checkpoint(out / "prepare" / "dataset.pt", step="prepare", stamp=None)
    assert ck.meta["n_train"] == len(ck.state_dict["x_train"]) == data["train_size"] == 100
    assert main(["step", "retrain-banana", "--params", str(params), "--out", str(out)]) == 2
    assert "unknown node 'retrain-banana'" in _one_line(capsys.readouterr().err)
    # a node whose inputs are missing fails with one line naming the step to run
    assert main(["step", "influence", "--params", str(params), "--out", str(out)]) == 1
    assert "Rerun step 'train_base'" in _one_line(capsys.readouterr().err)


def test_divergence_exits_1_naming_the_setting(tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    argv = ["params", "digits-mlp", *SMOKE, "--set", "train.optimizer.lr=1e8", "-o", str(params)]
    assert main(argv) == 0
    out = str(tmp_path / "a")
    assert main(["step", "prepare", "--params", str(params), "--out", out]) == 0
    capsys.readouterr()
    assert main(["step", "train_base", "--params", str(params), "--out", out]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "non-finite" in line and "Lower train.optimizer.lr" in line


@pytest.mark.slow
def test_report_rebuilds_from_a_finished_run(tmp_path: Path, capsys) -> None:
    from pipeline_fixtures import run_study

    cfg = smoke_config(retrain__variants=["cold", "warm", "pbrf"])
    run_study(tmp_path, cfg)
    written = (tmp_path / "report" / "report.md").read_text()
    (tmp_path / "report" / "report.md").unlink()
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gap (Table 5)" in out and "influence vs (Table 2)" in out and "[" in out
    assert (tmp_path / "report" / "report.md").read_text() == written  # rebuilt as the run wrote it
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "not a pbrf run directory" in _one_line(capsys.readouterr().err)
