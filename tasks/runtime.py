"""Shared plumbing of the steps: load inputs onto the device, rebuild the problem, progress bars.

No math here: models, losses and problems come from :mod:`pbrf`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from pbrf.config import StudyConfig
from pbrf.data import Dataset
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import BaseRun
from tasks import schemas
from tasks.artifacts import load_checkpoint, read_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout


def torch_dtype(cfg: StudyConfig) -> torch.dtype:
    return getattr(torch, cfg.dtype)


def loss_name(cfg: StudyConfig, data: Dataset) -> str:
    return data.default_loss if cfg.loss == "auto" else cfg.loss


def load_dataset_artifact(layout: RunLayout, cfg: StudyConfig) -> Dataset:
    """The prepared split, cast to ``cfg.dtype`` on ``cfg.device``."""
    ck = load_checkpoint(layout.dataset, step="prepare", config_hash=config_hash(cfg, "prepare"))
    sd, meta = ck.state_dict, ck.meta
    dtype = torch_dtype(cfg)

    def cast(t: Tensor) -> Tensor:
        return t.to(cfg.device, dtype) if t.is_floating_point() else t.to(cfg.device)

    return Dataset(
        meta["name"],
        cast(sd["x_train"]),
        cast(sd["t_train"]),
        cast(sd["x_test"]),
        cast(sd["t_test"]),
        meta["task"],
        int(meta["output_dim"]),
    )


def build_problem(cfg: StudyConfig, dataset: Dataset) -> tuple[Problem, Tensor]:
    """The problem (network on ``cfg.device`` in ``cfg.dtype``, loss, weight decay) and θ⁰."""
    module = build_model(
        cfg.model.name,
        input_shape=dataset.input_shape,
        output_dim=dataset.output_dim,
        seed=cfg.model.seed,
        **cfg.model.options,
    ).to(device=cfg.device, dtype=torch_dtype(cfg))
    problem = Problem.from_module(
        module, get_loss(loss_name(cfg, dataset)), weight_decay=cfg.train.weight_decay
    )
    return problem, flat_params(module)


def flat_from_state(problem: Problem, state_dict: dict[str, Tensor], cfg: StudyConfig) -> Tensor:
    """State dict (single or stacked) → flat θ ``(d,)`` or ``(M, d)`` on the config's device."""
    assert problem.spec is not None
    return problem.spec.flatten(state_dict).to(device=cfg.device, dtype=torch_dtype(cfg))


def state_from_flat(problem: Problem, theta: Tensor) -> dict[str, Tensor]:
    assert problem.spec is not None
    return problem.spec.unflatten(theta)


def load_theta(
    layout: RunLayout, problem: Problem, cfg: StudyConfig, which: str = "theta_s"
) -> Tensor:
    path = layout.theta_s if which == "theta_s" else layout.theta0
    ck = load_checkpoint(path, step="train_base", config_hash=config_hash(cfg, "train_base"))
    return flat_from_state(problem, ck.state_dict, cfg)


def load_base_run(layout: RunLayout, problem: Problem, cfg: StudyConfig) -> BaseRun:
    h = config_hash(cfg, "train_base")
    orders = load_checkpoint(layout.orders, step="train_base", config_hash=h).state_dict["orders"]
    hist = read_table(layout.base_history, schemas.BASE_HISTORY, step="train_base", config_hash=h)
    return BaseRun(
        theta0=load_theta(layout, problem, cfg, "theta0"),
        theta_s=load_theta(layout, problem, cfg, "theta_s"),
        orders=orders.to(torch.long),
        epoch_loss=torch.tensor(hist["objective"].tolist()),
    )


@dataclass
class Selection:
    removed: Tensor  # (M, k) long, training rows
    test_index: Tensor  # (P,) long, test rows


def load_selection(layout: RunLayout, cfg: StudyConfig) -> Selection:
    h = config_hash(cfg, "select")
    rem = read_table(layout.removed, schemas.REMOVED, step="select", config_hash=h)
    rem = rem.sort_values(["removal_id", "position"])
    m = int(rem["removal_id"].max()) + 1
    removed = torch.tensor(rem["train_index"].tolist(), dtype=torch.long).view(m, -1)
    tp = read_table(layout.test_points, schemas.TEST_POINTS, step="select", config_hash=h)
    tp = tp.sort_values("position")
    return Selection(removed, torch.tensor(tp["test_index"].tolist(), dtype=torch.long))


def removed_lists(removed: Tensor) -> list[list[int]]:
    return [row.tolist() for row in removed.cpu()]


# --------------------------------------------------------------------------- progress


def progress_enabled() -> bool | None:
    """``PBRF_PROGRESS=0/1`` forces bars off/on; by default tqdm shows them only on a terminal."""
    flag = os.environ.get("PBRF_PROGRESS")
    if flag is None:
        return None  # tqdm: disable when stderr is not a TTY
    return flag.strip().lower() in ("1", "true", "yes", "on")


def _bar(desc: str, total: int | None, unit: str) -> tqdm:
    enabled = progress_enabled()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if enabled is None else not enabled,
        mininterval=0.5,
    )


class EpochBar:
    """``progress(epoch, mean_loss_per_model)`` callback for training, as a tqdm bar."""

    def __init__(self, desc: str, total: int | None):
        self.bar = _bar(desc, total, "epoch")

    def __call__(self, epoch: int, loss: Tensor) -> None:
        self.bar.update(1)
        loss = loss.detach().float()
        self.bar.set_postfix(loss=f"{float(loss.mean()):.4g}", refresh=False)

    def close(self) -> None:
        self.bar.close()


class StepBar:
    """``progress(step, total)`` callback for iterative solvers (LiSSA), as a tqdm bar."""

    def __init__(self, desc: str):
        self.bar = _bar(desc, None, "it")

    def __call__(self, step: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def with_bar(bar: EpochBar | StepBar, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    finally:
        bar.close()


def configure_threads(parallel: int = 1) -> int:
    """Set torch's intra-op threads: ``PBRF_THREADS`` if set, else ``cores ÷ (2·parallel)``, ≥ 1.

    ``parallel`` is the number of steps running at once in this process. Leaving half the cores
    free avoids OpenMP oversubscription, which is ruinous for the small ops of these models:
    measured on a shared 2-core machine, the influence step of a tiny study took 11.4 s with
    2 threads and 2.8 s with 1.
    """
    env = os.environ.get("PBRF_THREADS")
    threads = int(env) if env else max(1, (os.cpu_count() or 1) // (2 * max(1, parallel)))
    torch.set_num_threads(threads)
    return threads


# PyTorch's forward-mode AD (torch.func.jvp) keeps its "dual level" in process-global state, so
# two threads inside jvp at once corrupt each other ("no level exists"). The Prefect flow runs
# steps in threads; the steps that use jvp — linearized-PBRF retraining (Eq. 11) and every
# curvature product of the influence solve (GNH and Hessian) — take this lock.
_FORWARD_AD_LOCK = threading.Lock()


@contextmanager
def forward_ad_section(needed: bool = True) -> Iterator[None]:
    """Hold the process-wide forward-AD lock (when ``needed``) for the enclosed computation."""
    if not needed:
        yield
        return
    with _FORWARD_AD_LOCK:
        yield
