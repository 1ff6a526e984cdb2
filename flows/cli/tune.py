"""``pbrf tune PRESET``: the learning rate by a validation sweep over the paper's grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.cli.config_cmds import config_from
from flows.cli.errors import ConfigError


def _grid(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--grid {text!r}: give comma-separated numbers, e.g. 0.1,0.01") from None
    if not grid or any(not v > 0 for v in grid):
        raise ConfigError(f"--grid {text!r}: every rate must be a positive number")
    return grid


def cmd_tune_scale(args: argparse.Namespace, cfg) -> int:
    """``pbrf tune --lissa-scale``: the paper's procedure for LiSSA's σ (tasks.sweeps.tune_scale)."""
    from tasks.engine.artifacts import write_json
    from tasks.engine.lock import run_lock
    from tasks.sweeps.tune_scale import SCALE_GRID, tune_lissa_scale

    if cfg.influence.solver.name != "lissa":
        raise ConfigError(
            f"influence.solver.name={cfg.influence.solver.name}: only LiSSA has a scale to tune"
        )
    grid = tuple(_grid(args.grid) or SCALE_GRID)
    suffix = f"-{args.scale}" if args.scale else ""
    root = Path(f"runs/{cfg.name}{suffix}")
    out = Path(args.out or f"runs/{cfg.name}{suffix}-tune")
    with run_lock(root):
        result = tune_lissa_scale(root, cfg, grid)
    for row in result["tried"]:
        mark = "  ← chosen" if row["scale"] == result["chosen_scale"] else ""
        if row["diverged_at_step"] is not None:
            shown = f"diverged at step {row['diverged_at_step']} of repeat {row['repeat']}"
        else:
            shown = f"converges (horizon T/σ = {row['horizon']:.4g})"
        print(f"σ {row['scale']:<6g} {shown}{mark}")
    path = write_json(out / "lissa_scale.json", result)
    if result["chosen_scale"] is None:
        print(f"{path}: LiSSA diverged at every σ of {list(grid)}; raise the grid (--grid)")
        return 1
    print(
        f"{path}: σ {result['chosen_scale']:g}; run with "
        f"--set influence.solver.scale={result['chosen_scale']:g}"
    )
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from tasks.sweeps.tune import paper_grid, tune_lr, write_tune

    cfg = config_from(args)
    if getattr(args, "lissa_scale", False):
        return cmd_tune_scale(args, cfg)
    grid = _grid(args.grid)
    try:
        grid = grid or list(paper_grid(cfg))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    suffix = f"-{args.scale}" if args.scale else ""
    out = Path(args.out or f"runs/{cfg.name}{suffix}-tune")
    result = tune_lr(cfg, grid)
    rows = zip(result["grid"], result["validation_loss"], result["diverged_in_epoch"], strict=True)
    for lr, loss, epoch in rows:
        mark = "  ← chosen" if lr == result["chosen_lr"] else ""
        if epoch is not None:
            shown = f"diverged (non-finite training loss in epoch {epoch})"
        else:
            shown = "non-finite" if loss is None else f"{loss:.6g}"
        print(f"lr {lr:<8g} validation loss {shown}{mark}")
    path = write_tune(result, out)
    print(
        f"{path}: lr {result['chosen_lr']:g} on {result['n_validation']} validation examples; "
        f"run with --set train.optimizer.lr={result['chosen_lr']:g}"
    )
    return 0
