"""``pbrf tune PRESET``: choose the learning rate by a validation sweep, as the paper did.

Appendix E.3: the learning rate of each row was chosen by a sweep over {1, 0.3, 0.1, 0.03, 0.01,
0.003, 0.001} (Adam: {0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001}) and is not reported. This step
holds out ``data.validation_fraction`` of the training split (10 % when the config has none),
trains the base model θˢ at every rate of the grid from the same θ⁰ and batch order, and picks
the rate with the lowest mean validation loss; a rate whose training diverges (a non-finite
loss, in training or on the validation split) is never chosen; the epoch where training
diverged is recorded. The result — grid, validation losses, chosen rate, split sizes — is
written to ``tune.json``; the study then runs with ``--set train.optimizer.lr=<chosen>`` so the
run's ``config.json`` records it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pbrf.data import load_dataset
from pbrf.metrics import eval_test_loss
from pbrf.responses import train_base
from pbrf.trainer import NonFiniteLossError
from tasks.engine import progress
from tasks.engine.artifacts import write_json
from tasks.steps.runtime import build_problem

SGD_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
ADAM_GRID = (0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)
DEFAULT_VALIDATION = 0.1


def paper_grid(cfg: Any) -> tuple[float, ...]:
    """The paper's grid for the config's optimizer (L-BFGS has no learning rate)."""
    name = cfg.train.optimizer.name
    if name == "lbfgs":
        raise ValueError("train.optimizer.name=lbfgs has no learning rate to tune")
    return ADAM_GRID if name == "adam" else SGD_GRID


def tune_lr(cfg: Any, grid: Sequence[float] | None = None) -> dict[str, Any]:
    """Validation loss of θˢ trained at each rate of ``grid``; the lowest finite one wins."""
    grid = tuple(grid or paper_grid(cfg))
    if cfg.data.validation_fraction == 0.0:
        cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"validation_fraction": DEFAULT_VALIDATION})}
        )
    ds = load_dataset(cfg.data)
    if ds.n_val == 0:
        raise ValueError(f"data set {cfg.data.name!r} has no validation split to tune on")
    problem, theta0 = build_problem(cfg, ds)
    x_val, t_val = ds.x_val.to(cfg.device), ds.t_val.to(cfg.device)
    x, t = ds.x_train.to(cfg.device), ds.t_train.to(cfg.device)
    losses: list[float] = []
    diverged: list[int | None] = []  # the epoch whose loss became non-finite
    for lr in grid:
        opt = cfg.train.optimizer.model_copy(update={"lr": lr})
        train = cfg.train.model_copy(update={"optimizer": opt, "checkpoints": 0})
        try:
            with progress.epochs(f"tune lr {lr:g}", train.epochs) as bar:
                run = train_base(problem, theta0, x, t, train, progress=bar, kernel=cfg.kernel)
        except NonFiniteLossError as exc:
            losses.append(math.inf)
            diverged.append(exc.epoch)
            continue
        loss = float(eval_test_loss(problem, run.theta_s, x_val, t_val))
        losses.append(loss if math.isfinite(loss) else math.inf)
        diverged.append(None)
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    if not finite:
        raise RuntimeError(f"training diverged at every learning rate of {list(grid)}")
    best = min(finite, key=lambda i: losses[i])
    return {
        "experiment": cfg.name,
        "optimizer": cfg.train.optimizer.name,
        "epochs": cfg.train.epochs,
        "grid": list(grid),
        "validation_loss": [v if math.isfinite(v) else None for v in losses],
        "diverged_in_epoch": diverged,
        "chosen_lr": grid[best],
        "n_train": int(ds.n_train),
        "n_validation": int(ds.n_val),
        "validation_fraction": cfg.data.validation_fraction,
        "threads": torch.get_num_threads(),
    }


def write_tune(result: dict[str, Any], out: Path) -> Path:
    path = Path(out) / "tune.json"
    write_json(path, result)
    return path
