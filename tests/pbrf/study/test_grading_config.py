"""The grading configuration: what it accepts, what it refuses (naming the field), and how
``pbrf grade`` fills it in; TracIn's checkpoint schedule against a brute-force count."""

from __future__ import annotations

import pytest
from pipeline_fixtures import smoke_config
from pydantic import ValidationError

from flows.cli import main
from pbrf.checkpoints import checkpoint_epochs, tracin_checkpoints
from pbrf.optim import step_lr
from pbrf.study.grading import GRADE_CHECKPOINTS, grade_overrides, references
from pbrf.study.presets import load_preset


def _error(**overrides) -> str:
    with pytest.raises(ValidationError) as info:
        smoke_config(**overrides)
    return str(info.value)


def test_refusals_name_the_field_to_change():
    assert "train.checkpoints" in _error(grade__estimators=["tracin"])
    assert "checkpoints (4) exceeds epochs (3)" in _error(train__checkpoints=4)
    assert "need a fixed SGD step" in _error(
        train__optimizer={"name": "adam"}, train__checkpoints=1, retrain__pbrf__horizon="explicit"
    )
    assert "grade.references: 'warm' is not trained" in _error(
        grade__estimators=["grad_dot"],
        retrain__variants=["pbrf", "cold"],
        grade__references=["warm"],
        grade__rank_by="warm",
    )
    assert "add exact to grade.estimators" in _error(
        grade__estimators=["grad_dot"], grade__references=["exact"], grade__rank_by="exact"
    )
    assert "grade.rank_by: 'proximal'" in _error(
        grade__estimators=["grad_dot"], grade__rank_by="proximal"
    )
    assert "cg.tol: Input should be less than 1 (got 2)" in _error(
        grade__estimators={"cg": {"tol": 2}}
    )
    assert "unknown estimator 'nope'" in _error(grade__estimators=["nope"])


def test_default_references_are_those_the_study_computes():
    cfg = smoke_config(grade__estimators=["exact"], retrain__variants=["cold", "warm", "pbrf"])
    assert references(cfg) == ("pbrf", "exact", "cold")
    cfg = smoke_config(grade__estimators=["grad_dot"])
    assert references(cfg) == ("pbrf", "pbrf_paper", "linearized_pbrf", "cold")


def test_pbrf_grade_grades_every_estimator_with_lissa_as_the_studys_solver():
    base = load_preset("digits-mlp")
    overrides, notes = grade_overrides(base)
    cfg = load_preset("digits-mlp", overrides)
    assert not notes and len(cfg.grade.estimators) == 10
    assert cfg.grade.estimators["lissa"].model_dump() == base.influence.solver.model_dump()
    assert cfg.train.checkpoints == GRADE_CHECKPOINTS
    smoke = load_preset("digits-mlp", grade_overrides(smoke_config())[0], "smoke")
    assert smoke.train.checkpoints == 3  # at most one per epoch
    # L-BFGS has no SGD step: tracin is left out of "all", with a note
    lbfgs = load_preset("cancer-lr", scale="smoke")
    overrides, notes = grade_overrides(lbfgs)
    assert "tracin" not in overrides["grade.estimators"] and "tracin skipped" in notes[0]
    assert "train.checkpoints" not in overrides


def test_checkpoint_schedule_counts_every_epochs_step():
    assert checkpoint_epochs(100, 10) == tuple(range(0, 100, 10))
    assert checkpoint_epochs(3, 10) == (0, 1, 2)
    assert checkpoint_epochs(10, 3) == (0, 3, 6)
    steps = lambda e: step_lr(0.1, e, (4, 7), 0.5) / (1 - 0.9)  # noqa: E731
    import torch

    snaps = {e: torch.zeros(2) for e in checkpoint_epochs(10, 3)}
    cks = tracin_checkpoints(snaps, 10, steps)
    assert [c.visits for c in cks] == [3.0, 3.0, 4.0]
    for c, (lo, hi) in zip(cks, [(0, 3), (3, 6), (6, 10)], strict=True):
        assert c.lr * c.visits == pytest.approx(sum(steps(e) for e in range(lo, hi)), rel=1e-12)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["grade", "--estimators", "exact,nope"], "--estimators: unknown estimator(s) ['nope']"),
        (["grade", "cancer-lr", "--scale", "smoke", "--estimators", "tracin"], "drop tracin"),
        (["grade", "--set", "grade.estimators.cg.tol=2"], "grade.estimators: cg.tol"),
        (["grade", "no-such-preset"], "unknown preset 'no-such-preset'"),
    ],
)
def test_pbrf_grade_refuses_bad_input_in_one_line_with_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and needle in err[0], err


def test_a_setting_override_tweaks_one_estimator_of_the_default_set():
    from flows.grade import GradeParams

    cfg, _ = GradeParams(scale="smoke", overrides={"grade.estimators.cg.tol": 1e-6}).config()
    assert len(cfg.grade.names) == 10 and cfg.grade.estimators["cg"].tol == 1e-6
    cfg, _ = GradeParams(scale="smoke", overrides={"grade.estimators": ["exact"]}).config()
    assert cfg.grade.names == ("exact",) and cfg.train.checkpoints == 0
    cfg, _ = GradeParams(scale="smoke", overrides={"train.checkpoints": 2}).config()
    assert cfg.train.checkpoints == 2  # the user's count wins over the default for tracin


def test_the_mislabel_auc_belongs_only_to_the_estimator_with_the_studys_solver_settings():
    import pandas as pd

    from tasks.steps.grade import mislabel_aucs

    table = pd.DataFrame({"method": ["influence", "pbrf", "random"], "auc": [0.7, 0.9, 0.5]})
    exact = {"name": "exact", "method": "auto"}
    graded = {"exact": exact, "grad_dot": {"name": "grad_dot"}}
    assert mislabel_aucs(table, exact, graded) == {"exact": 0.7}
    assert mislabel_aucs(table, {"name": "exact", "method": "primal"}, graded) == {}
    assert mislabel_aucs(table, {"name": "cg", "max_iter": 10, "tol": 1e-6}, graded) == {}
    assert mislabel_aucs(table, None, graded) == {}
