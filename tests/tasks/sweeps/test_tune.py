"""``pbrf tune``: the learning rate by a validation sweep (Appendix E.3's procedure)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pipeline_fixtures import smoke_config

from flows.cli import main
from pbrf.data import load_dataset
from pbrf.responses import train_base
from tasks.steps.runtime import build_problem
from tasks.sweeps.tune import SGD_GRID, paper_grid, tune_lr


def test_the_lowest_validation_loss_wins_and_a_diverging_rate_never_does() -> None:
    cfg = smoke_config()
    grid = (1e30, 1e4, 0.1, 0.001)  # 1e30: non-finite training loss; 1e4: validation loss
    result = tune_lr(cfg, grid)
    losses = result["validation_loss"]
    assert result["grid"] == list(grid) and result["n_validation"] > 0
    finite = {lr: v for lr, v in zip(grid, losses, strict=True) if v is not None}
    # the diverging rate is recorded with the epoch it diverged in, and the sweep goes on
    assert losses[:2] == [None, None] and set(finite) == {0.1, 0.001}
    assert result["diverged_in_epoch"][0] is not None
    assert result["diverged_in_epoch"][1:] == [None, None, None]
    assert result["chosen_lr"] == min(finite, key=finite.get)
    # the chosen rate's loss, recomputed independently: same split, same training, and the
    # validation cross-entropy by torch's own function on the network's outputs
    val = cfg.data.model_copy(update={"validation_fraction": 0.1})
    ds = load_dataset(val)
    problem, theta0 = build_problem(cfg.model_copy(update={"data": val}), ds)
    opt = cfg.train.optimizer.model_copy(update={"lr": result["chosen_lr"]})
    run = train_base(
        problem, theta0, ds.x_train, ds.t_train, cfg.train.model_copy(update={"optimizer": opt})
    )
    logits = problem.f(run.theta_s, ds.x_val).double()
    want = float(torch.nn.functional.cross_entropy(logits, ds.t_val))
    # float32 outputs, float64 mean: agreement to float32 rounding of a loss ≈ 2
    assert finite[result["chosen_lr"]] == pytest.approx(want, rel=1e-5)
    assert paper_grid(cfg) == SGD_GRID


def test_cli_writes_the_choice_and_rejects_bad_grids(tmp_path: Path) -> None:
    out = tmp_path / "t"
    argv = ["tune", "digits-mlp", "--scale", "smoke", "--grid", "0.1,0.01", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "tune.json").read_text(encoding="utf-8"))
    assert result["chosen_lr"] in (0.1, 0.01)
    assert all(math.isfinite(v) for v in result["validation_loss"])
    assert main(["tune", "digits-mlp", "--grid", "0.1,x"]) == 2
    assert main(["tune", "cancer-lr"]) == 2  # L-BFGS has no learning rate
