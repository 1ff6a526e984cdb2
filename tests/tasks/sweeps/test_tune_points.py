"""``pbrf sweep --tune-lr``: each Figure-5 point trains at the rate its own validation sweep chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from pbrf.study.sweeps import SweepSpec, resolve_sweep
from tasks.sweeps import tune_points
from tasks.sweeps.tune import tune_lr
from tasks.sweeps.tune_points import TUNE_DIR, tune_sweep_lr

GRID = (0.3, 0.003)  # two of the paper's rates: a smoke MLP's validation loss tells them apart


def test_every_point_trains_at_its_own_choice_and_a_rerun_trains_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = resolve_sweep("fig5-width", "smoke")
    tuned = tune_sweep_lr(tmp_path, spec, GRID)
    points = tuned.points()
    assert set(tuned.lr) == {p.id for p in points}
    for point in points:  # the rate each point's own sweep picks, applied to that point only
        untuned = next(p for p in spec.points() if p.id == point.id).config
        assert tune_lr(untuned, GRID)["chosen_lr"] == tuned.lr[point.id]
        assert point.config.train.optimizer.lr == tuned.lr[point.id]
    assert len(list((tmp_path / TUNE_DIR).glob("*.json"))) == len(points)  # widths differ
    # the spec (as sweep.json stores it) keeps the rates
    assert SweepSpec.model_validate_json(tuned.model_dump_json()).points() == points

    def no_training(*args, **kwargs):
        raise AssertionError("a stored tuning was not reused")

    monkeypatch.setattr(tune_points, "tune_lr", no_training)
    reused: list[bool] = []
    again = tune_sweep_lr(tmp_path, spec, GRID, on_point=lambda pid, r, hit: reused.append(hit))
    assert again.lr == tuned.lr and all(reused)
    with pytest.raises(AssertionError, match="not reused"):  # another grid is another tuning
        tune_sweep_lr(tmp_path, spec, (0.1,))


def test_the_paper_scale_tunes_by_default_and_the_stand_in_scales_do_not() -> None:
    assert resolve_sweep("fig5-width", "paper").tune_lr
    assert not resolve_sweep("fig5-width", "smoke").tune_lr
    assert not resolve_sweep("fig5-depth", "laptop").tune_lr


def test_points_that_differ_only_after_training_share_one_tuning(tmp_path: Path) -> None:
    spec = resolve_sweep("digits-mlp", "smoke", grid={"damping": [0.1, 0.01, 0.001]})
    tuned = tune_sweep_lr(tmp_path, spec, GRID)
    assert len(set(tuned.lr.values())) == 1 and len(tuned.lr) == 3
    (record,) = (tmp_path / TUNE_DIR).glob("*.json")
    result = json.loads(record.read_text(encoding="utf-8"))
    assert result["grid"] == list(GRID) and result["first_point"] == "damping_0p1"


def test_a_swept_rate_or_an_optimizer_without_one_is_refused(tmp_path: Path, monkeypatch) -> None:
    lr_sweep = resolve_sweep("digits-mlp", "smoke", grid={"train.optimizer.lr": [0.1, 0.01]})
    with pytest.raises(ValueError, match="cannot also be tuned"):
        tune_sweep_lr(tmp_path, lr_sweep, GRID)
    with pytest.raises(ValueError, match="cannot also be tuned"):
        lr_sweep.model_copy(update={"lr": {"lr_0p1": 0.3}}).points()
    spec = resolve_sweep("fig5-width", "smoke")
    with pytest.raises(ValueError, match="does not have"):
        spec.model_copy(update={"lr": {"width_7": 0.1}}).points()
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "cancer-lr", "--grid", "damping=[0.1,0.01]", "--tune-lr", "--serial"]
    assert main(argv) == 2  # L-BFGS has no learning rate: one line, exit 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
