"""Before a run: how much training it is, how long that takes here, and its peak memory.

Work is counted in *model-epochs* (one model, one pass over the N training examples): base
training K; per removal, Cold-Start K + K·f (f = ``retrain.epochs_fraction``: retraining from θ⁰
for K epochs, then the shared K·f-epoch schedule) and every other retraining variant K·f (the
matched PBRF's length is known only after the curvature step and is taken as K·f). The time per
model-epoch is measured on this machine: a few forward + backward steps of one model at the
configured batch size on random data of the row's shapes (values do not change the time), times
the steps per epoch. Retraining runs its M models vectorized, which is faster per model than one
model at a time, so the estimate errs long; the spectrum, influence and the report are not counted
(at the presets' scales they are a small part of a run). Peak memory is
:func:`pbrf.study.memory.retrain_memory` for the largest shard of a variant's M models.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from pbrf.models import build_from_options
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.study.memory import retrain_memory
from tasks.steps.runtime import torch_dtype

STEPS = 5  # timed steps after WARMUP untimed ones
WARMUP = 2


@dataclass(frozen=True)
class Forecast:
    model_epochs: float
    step_seconds: float  # measured: one forward + backward step of one model
    steps_per_epoch: int
    peak_bytes: int

    @property
    def seconds(self) -> float:
        return self.model_epochs * self.steps_per_epoch * self.step_seconds

    def duration(self) -> str:
        hours = self.seconds / 3600
        return f"{hours:.3g} h" if hours >= 1 else f"{self.seconds / 60:.2g} min"

    def short(self) -> str:
        """E.g. ``≈ 3.2 h of training, peak ≈ 0.85 GiB`` (the start banner's)."""
        return f"≈ {self.duration()} of training, peak ≈ {self.peak_bytes / 2**30:.2g} GiB"

    def line(self) -> str:
        shown = self.duration()
        return (
            f"estimate: ≈ {shown} of training ({self.model_epochs:.3g} model-epochs × "
            f"{self.steps_per_epoch} steps × {self.step_seconds * 1e3:.3g} ms per step measured "
            f"here), peak memory ≈ {self.peak_bytes / 2**30:.2g} GiB"
        )


def model_epochs(cfg: Any) -> float:
    """Base training plus every retraining variant's M models (see the module docstring)."""
    k = cfg.train.epochs
    short = max(1, round(k * cfg.retrain.epochs_fraction))
    m = cfg.select.num_removals
    per_removal = sum(k + short if v == "cold" else short for v in cfg.retrain.variants)
    return k + m * per_removal


def _batch(cfg: Any, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    facts = cfg.data.signature()
    g = torch.Generator().manual_seed(0)
    shape = (n, *facts.input_shape)
    if facts.task == "language_model":
        x = torch.randint(0, facts.output_dim, shape, generator=g)
        return x, torch.randint(0, facts.output_dim, shape, generator=g)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if facts.task == "reconstruction":
        return x, x.flatten(1).clone()
    if facts.task == "multiclass":
        return x, torch.randint(0, facts.output_dim, (n,), generator=g)
    if facts.task == "binary":
        return x, torch.randint(0, 2, (n, 1), generator=g).to(dtype)
    return x, torch.randn(n, facts.output_dim, generator=g, dtype=dtype)


def step_seconds(cfg: Any, batch: int, threads: int | None = None) -> float:
    """The fastest of :data:`STEPS` timed gradient steps of one model on ``batch`` examples,
    with ``threads`` torch threads (those a step of the run gets; default: the current count).
    Timing with more threads than a running step has would measure OpenMP oversubscription on
    a loaded machine (measured: 280 ms against 3.8 ms per step of the cpu-scale MLP)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _fastest_step(cfg, batch)
    finally:
        torch.set_num_threads(previous)


def _fastest_step(cfg: Any, batch: int) -> float:
    from pbrf.losses import get_loss

    facts = cfg.data.signature()
    dtype = torch_dtype(cfg.dtype)
    module = build_from_options(
        cfg.model, input_shape=facts.input_shape, output_dim=facts.output_dim
    ).to(dtype=dtype)
    problem = Problem.from_module(
        module, get_loss(cfg.loss_name(facts.default_loss)), cfg.train.weight_decay
    )
    theta = flat_params(module).requires_grad_(True)
    x, t = _batch(cfg, batch, dtype)
    best = math.inf
    for i in range(WARMUP + STEPS):
        start = time.perf_counter()
        (grad,) = torch.autograd.grad(problem.cost(theta, x, t), theta)
        grad.sum().item()
        if i >= WARMUP:
            best = min(best, time.perf_counter() - start)
    return best


def forecast(cfg: Any, threads: int | None = None) -> Forecast:
    """The run's work, time per step measured with ``threads`` torch threads, and memory."""
    n = cfg.data.sizes().train
    batch = n if cfg.train.batch_size is None else min(cfg.train.batch_size, n)
    memory = retrain_memory(cfg)
    shard = math.ceil(cfg.select.num_removals / max(1, cfg.retrain.shards))
    return Forecast(
        model_epochs(cfg),
        step_seconds(cfg, batch, threads),
        math.ceil(n / batch),
        memory.total(shard),
    )
