"""What each data set is, known without reading it (provisional)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pbrf.data.config import DataConfig


@dataclass(frozen=True)
class DataFacts:
    kind: str
    task: str
    input_shape: tuple[int, ...]
    output_dim: int
    n_train: int
    default_loss: str


_BUNDLED = {
    "breast_cancer": ("tabular", "binary", (30,), 1, 569, "binary_cross_entropy"),
    "digits": ("tabular", "multiclass", (64,), 10, 1797, "cross_entropy"),
    "diabetes": ("tabular", "regression", (10,), 1, 442, "squared_error"),
}


def data_facts(cfg: DataConfig) -> DataFacts:
    kind, task, shape, out, total, loss = _BUNDLED[cfg.name]
    n = total - math.ceil(total * cfg.test_fraction)
    if cfg.train_size:
        n = min(n, cfg.train_size)
    return DataFacts(kind, task, shape, out, n, loss)
