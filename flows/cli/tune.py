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


def cmd_tune(args: argparse.Namespace) -> int:
    from tasks.sweeps.tune import paper_grid, tune_lr, write_tune

    cfg = config_from(args)
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
