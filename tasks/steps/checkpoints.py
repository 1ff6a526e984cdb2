"""TracIn's checkpoints of base training as an artifact (``base/checkpoints.pt``)."""

from __future__ import annotations

import torch

from pbrf.estimators.base import Checkpoint
from pbrf.problem import Problem
from tasks.engine.context import StepContext
from tasks.steps.runtime import flat, state


def save_tracin_checkpoints(
    ctx: StepContext,
    problem: Problem,
    checkpoints: tuple[Checkpoint, ...],
    batch_size: int | None,
    n_train: int,
) -> None:
    """Write the checkpoints: θ stacked ``(C, d)`` as a state dict, each one's effective step
    and visits (:mod:`pbrf.checkpoints`), and the batch size B (N for full batch)."""
    assert problem.spec is not None
    d = problem.spec.dim
    thetas = (
        torch.stack([c.theta for c in checkpoints])
        if checkpoints
        else torch.empty(0, d, dtype=torch.float32)
    )
    ctx.save_checkpoint(
        "base_checkpoints",
        state(problem, thetas),
        meta={
            "lr": [c.lr for c in checkpoints],
            "visits": [c.visits for c in checkpoints],
            "batch_size": min(batch_size or n_train, n_train),
        },
    )


def load_tracin_checkpoints(
    ctx: StepContext, problem: Problem, dtype: str
) -> tuple[tuple[Checkpoint, ...], int]:
    """The checkpoints on the config's device in ``dtype``, and the batch size B."""
    ck = ctx.load_checkpoint("base_checkpoints")
    meta = ck.meta
    if not meta["lr"]:
        return (), int(meta["batch_size"])
    thetas = flat(problem, ck.state_dict, ctx.cfg, dtype)
    out = tuple(
        Checkpoint(thetas[i], lr=float(lr), visits=float(v))
        for i, (lr, v) in enumerate(zip(meta["lr"], meta["visits"], strict=True))
    )
    return out, int(meta["batch_size"])
