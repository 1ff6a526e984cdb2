"""The ``pbrf`` command line (in process; ``pbrf run`` is tested in test_pipeline_flow.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_fixtures import tiny_config, tiny_set_args

from flows.cli import main
from pbrf.config import StudyConfig
from pbrf.presets import PRESETS
from tasks.steps import run_step, write_config


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS) and "(default)" in out


def test_params_writes_a_full_validated_config(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    assert main(["params", "cancer-lr", "--set", "retrain.num_removals=3", "-o", str(path)]) == 0
    cfg = StudyConfig.model_validate(yaml.safe_load(path.read_text()))
    assert cfg.name == "cancer-lr" and cfg.retrain.num_removals == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--set", "train.lr=-1"], "train.lr: Input should be greater than 0"),
        (["run", "--set", "trian.lr=1"], "trian: Extra inputs are not permitted"),
        (["run", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["run", "--set", "train.lr"], "must look like key.path=value"),
        (["params", "--set", "retrain.num_removals=5000"], "exceeds the 1437 training examples"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1


def test_step_runs_a_stage_and_reports_runtime_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    assert main(["params", "digits-mlp", *tiny_set_args(), "-o", str(params)]) == 0
    out = tmp_path / "artifacts"
    args = ["--params", str(params), "--out", str(out)]
    assert main(["step", "prepare", *args]) == 0
    assert '"step": "prepare"' in capsys.readouterr().out
    # a missing input names the step to rerun
    assert main(["step", "select", *args, "--set", "data.seed=9"]) == 1
    assert "Rerun step 'prepare'" in capsys.readouterr().err
    # divergence surfaces as the library's message, exit 1, no traceback
    assert main(["step", "train_base", *args, "--set", "train.lr=1e9"]) == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and "Traceback" not in err


def test_report_rebuilds_from_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny_config(retrain__variants=["cold", "pbrf"], influence__solver="cg")
    write_config(tmp_path, cfg)
    for step in ("prepare", "train_base", "select"):
        run_step(step, tmp_path, cfg)
    for v in ("cold", "pbrf"):
        run_step("retrain", tmp_path, cfg, variant=v)
    run_step("influence", tmp_path, cfg)
    run_step("aggregate", tmp_path, cfg)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Cold-Start (LOO)" in out and "no LiSSA horizon (influence.solver=cg)" in out
    assert (tmp_path / "report" / "report.md").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 1
