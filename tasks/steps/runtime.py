"""Shared plumbing of the steps: load inputs onto the device, rebuild the problem.

No math here: models, losses and problems come from :mod:`pbrf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pbrf.data import Dataset
from pbrf.losses import get_loss
from pbrf.models import build_from_options
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import BaseRun
from tasks import schemas
from tasks.engine.context import StepContext

if TYPE_CHECKING:  # type hints only: the study config is not code these steps run
    from pbrf.study.config import StudyConfig


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def load_data(ctx: StepContext, dtype: str | None = None) -> Dataset:
    """The prepared split on the config's device, floating tensors cast to ``dtype``."""
    ck = ctx.load_checkpoint("dataset")
    sd, meta = ck.state_dict, ck.meta
    cfg = ctx.cfg
    want = torch_dtype(dtype or cfg.dtype)

    def cast(t: Tensor) -> Tensor:
        return t.to(cfg.device, want) if t.is_floating_point() else t.to(cfg.device)

    return Dataset(
        meta["name"],
        cast(sd["x_train"]),
        cast(sd["t_train"]),
        cast(sd["x_test"]),
        cast(sd["t_test"]),
        meta["task"],
        int(meta["output_dim"]),
        x_val=cast(sd["x_val"]),
        t_val=cast(sd["t_val"]),
    )


def build_problem(
    cfg: StudyConfig, dataset: Dataset, dtype: str | None = None
) -> tuple[Problem, Tensor]:
    """The problem (network on the config's device in ``dtype``, loss, weight decay) and θ⁰."""
    module = build_from_options(
        cfg.model, input_shape=dataset.input_shape, output_dim=dataset.output_dim
    ).to(device=cfg.device, dtype=torch_dtype(dtype or cfg.dtype))
    loss = get_loss(cfg.loss_name(dataset.default_loss))
    problem = Problem.from_module(module, loss, weight_decay=cfg.train.weight_decay)
    return problem, flat_params(module)


def flat(problem: Problem, state_dict: dict[str, Tensor], cfg: StudyConfig, dtype: str) -> Tensor:
    """State dict (single or stacked) → flat θ ``(d,)`` or ``(M, d)`` on the device in ``dtype``."""
    assert problem.spec is not None
    return problem.spec.flatten(state_dict).to(device=cfg.device, dtype=torch_dtype(dtype))


def state(problem: Problem, theta: Tensor) -> dict[str, Tensor]:
    """Flat ``(d,)`` or ``(M, d)`` → state dict of (stacked) parameter tensors."""
    assert problem.spec is not None
    return problem.spec.unflatten(theta)


def load_theta(ctx: StepContext, problem: Problem, which: str, dtype: str | None = None) -> Tensor:
    """θ⁰ (``"theta0"``) or θˢ (``"theta_s"``) as a flat vector."""
    return flat(problem, ctx.load_checkpoint(which).state_dict, ctx.cfg, dtype or ctx.cfg.dtype)


def load_base_run(ctx: StepContext, problem: Problem, *, cold: bool) -> BaseRun:
    """θˢ, and for cold-start retraining also θ⁰ and the recorded batch order."""
    theta_s = load_theta(ctx, problem, "theta_s")
    if not cold:
        return BaseRun(theta_s, theta_s, torch.empty(0, 0, dtype=torch.long), torch.empty(0))
    orders = ctx.load_checkpoint("orders").state_dict["orders"].to(torch.long)
    return BaseRun(load_theta(ctx, problem, "theta0"), theta_s, orders, torch.empty(0))


@dataclass
class Selection:
    removed: Tensor  # (M, k) long, training rows
    test_index: Tensor  # (P,) long, test rows


def load_selection(ctx: StepContext, *, test_points: bool = True) -> Selection:
    """The removal sets and (unless ``test_points=False``) the test rows."""
    rem = ctx.read_table("removed", schemas.REMOVED).sort_values(["removal_id", "position"])
    m = int(rem["removal_id"].max()) + 1
    removed = torch.tensor(rem["train_index"].tolist(), dtype=torch.long).view(m, -1)
    if not test_points:
        return Selection(removed, torch.empty(0, dtype=torch.long))
    tp = ctx.read_table("test_points", schemas.TEST_POINTS).sort_values("position")
    return Selection(removed, torch.tensor(tp["test_index"].tolist(), dtype=torch.long))


def shard_rows(m: int, shard: int, shards: int) -> list[int]:
    """The removal ids a shard owns: ``torch.tensor_split`` of ``0..M−1`` into ``shards``."""
    return torch.tensor_split(torch.arange(m), shards)[shard].tolist()


def removed_lists(removed: Tensor) -> list[list[int]]:
    return [row.tolist() for row in removed.cpu()]


def read_chosen_scale(ctx: StepContext) -> float:
    """LiSSA's σ as the influence node chose it (``scale='grid'``), from its ``solver`` table."""
    return float(ctx.read_table("solver", schemas.SOLVER)["scale"].iloc[0])


def read_top_eigenvalue(ctx: StepContext) -> float | None:
    """λ_max from the ``spectrum`` input, when this node reads one."""
    if not any(k.startswith("spectrum[") for k in ctx.node.inputs):
        return None
    return float(ctx.read_table("spectrum", schemas.SPECTRUM)["top_eigenvalue"].iloc[0])
