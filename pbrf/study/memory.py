"""How much device memory one retraining computation needs, and how many shards bound it.

A variant's M removals train as one vmapped computation (``pbrf.trainer``), so its memory grows
linearly in the number of stacked models m: per model the displacement δ, its gradient, the
optimizer's state and the activations of one minibatch kept for the backward pass (twice that
under ``torch.func.jvp`` for the linearized PBRF), plus what all models share (the data set on
the device, θˢ). :func:`retrain_memory` estimates both parts from shapes alone — the network is
run on PyTorch's ``meta`` device, so nothing is allocated — and :func:`shards_for` picks the
fewest ``retrain.shards`` whose largest shard fits a memory budget.

It is an estimate, not a measurement: it counts every module's output once (plus the input and
what the loss needs) and ignores allocator fragmentation and kernel workspaces, and so keeps a
safety factor (:data:`HEADROOM`) below the budget. ``benchmarks/bench_row.py`` measures the peak
on a CUDA device for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pbrf.models.footprint import device_memory, dtype_bytes, footprint

if TYPE_CHECKING:  # type hints only: the study config is not code these steps run
    from pbrf.study.config import StudyConfig

HEADROOM = 0.6  # use at most 60 % of the budget by the estimate
SAVED_PER_OUTPUT = 2  # a layer's output and the input of the next op, both kept for backward
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2, "lbfgs": 40}  # vectors of size d
GiB = 1024**3


@dataclass(frozen=True)
class RetrainMemory:
    """Bytes of one retraining computation: ``shared + m · per_model`` for m stacked models."""

    params: int  # d
    activations: int  # activation elements per example
    batch: int  # examples per step
    per_model: int  # bytes
    shared: int  # bytes

    def total(self, models: int) -> int:
        return self.shared + models * self.per_model


def retrain_memory(cfg: StudyConfig, *, linearized: bool = True) -> RetrainMemory:
    """Estimated memory of the heaviest retraining variant of ``cfg`` (the linearized PBRF,
    whose jvp keeps tangents beside the activations, unless ``linearized=False``)."""
    facts = cfg.data.signature()
    d, acts = footprint(cfg.model, facts.input_shape, facts.output_dim, tokens=facts.kind == "text")
    size = dtype_bytes(cfg.dtype)
    sizes = cfg.data.sizes()
    n = sizes.train
    batch = n if cfg.train.batch_size is None else min(cfg.train.batch_size, n)
    states = OPTIMIZER_STATES[cfg.train.optimizer.name]
    tangents = 2 if linearized else 1
    per_model = size * (d * (4 + states) + batch * acts * SAVED_PER_OUTPUT * tangents)
    example = math.prod(facts.input_shape) * (8 if facts.kind == "text" else size)
    shared = size * 2 * d + (n + sizes.test) * example * 2  # θˢ, θ⁰; inputs and targets
    return RetrainMemory(d, acts, batch, per_model, shared)


def shards_for(memory: RetrainMemory, num_removals: int, budget_bytes: float) -> int:
    """The fewest shards of ``num_removals`` whose largest shard fits ``HEADROOM·budget``."""
    usable = HEADROOM * budget_bytes - memory.shared
    if usable < memory.per_model:
        raise ValueError(
            f"one model needs ≈ {memory.total(1) / GiB:.1f} GiB, more than {HEADROOM:.0%} of "
            f"the {budget_bytes / GiB:.1f} GiB budget: lower train.batch_size"
        )
    per_shard = int(usable // memory.per_model)
    return max(1, math.ceil(num_removals / per_shard))


def product_chunk(cfg: StudyConfig, vectors: int, budget_bytes: float) -> int:
    """Examples per batched curvature product (GNH or Hessian times ``vectors`` vectors at once:
    activations, their jvp tangents and the vjp's, about 3 copies each) within
    ``HEADROOM·budget``."""
    facts = cfg.data.signature()
    _, acts = footprint(cfg.model, facts.input_shape, facts.output_dim, tokens=facts.kind == "text")
    size = dtype_bytes(cfg.dtype)
    return max(1, int(HEADROOM * budget_bytes // (3 * vectors * acts * size)))


def device_chunk(cfg: StudyConfig, vectors: int) -> int | None:
    """``None`` on a CPU (one pass over the data, as before); on a CUDA device the
    :func:`product_chunk` that fits its memory, so the curvature and influence steps of a
    paper-scale row do not hold every training example's activations at once."""
    if not cfg.device.startswith("cuda"):
        return None
    return product_chunk(cfg, vectors, float(device_memory(cfg.device)))
