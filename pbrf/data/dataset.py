"""Bundled scikit-learn data sets, split and standardized (Appendix E.3).

* ``breast_cancer`` — the paper's UCI "Cancer" (569 × 30, binary): one logit, sigmoid BCE.
* ``digits`` — 8×8 handwritten digits (1797 × 64, 10 classes): softmax cross-entropy.
* ``diabetes`` — regression (442 × 10): squared error, targets standardized.

Features are standardized with the training split's mean and standard deviation ("we normalized
the input features to have zero mean and unit variance"); constant features are left centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pbrf.data.config import DataConfig

# task of each bundled data set (scikit-learn is imported lazily: it takes ~1.5 s)
BUNDLED_TASKS = {"breast_cancer": "binary", "digits": "multiclass", "diabetes": "regression"}
_LOSS_OF_TASK = {
    "binary": "binary_cross_entropy",
    "multiclass": "cross_entropy",
    "regression": "squared_error",
}


@dataclass
class Dataset:
    name: str
    x_train: Tensor
    t_train: Tensor
    x_test: Tensor
    t_test: Tensor
    task: str  # "binary" | "multiclass" | "regression"
    output_dim: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def default_loss(self) -> str:
        return _LOSS_OF_TASK[self.task]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Dataset:
        def cast(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        return Dataset(
            self.name,
            cast(self.x_train),
            cast(self.t_train),
            cast(self.x_test),
            cast(self.t_test),
            self.task,
            self.output_dim,
        )


def raw_arrays(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, t, task)`` of a bundled scikit-learn data set, before any split."""
    if name not in BUNDLED_TASKS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(BUNDLED_TASKS)}")
    from sklearn import datasets as skd

    bunch = getattr(skd, f"load_{name}")()
    task = BUNDLED_TASKS[name]
    dtype = np.int64 if task == "multiclass" else np.float64
    return np.asarray(bunch.data, dtype=np.float64), bunch.target.astype(dtype), task


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def split_dataset(x: np.ndarray, t: np.ndarray, task: str, cfg: DataConfig) -> Dataset:
    """Split (seeded; stratified for classification), subsample and standardize raw arrays."""
    from sklearn.model_selection import train_test_split

    stratify = t if task != "regression" else None
    x_tr, x_te, t_tr, t_te = train_test_split(
        x, t, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=stratify
    )
    if cfg.train_size is not None and cfg.train_size < len(x_tr):
        keep = np.random.default_rng(cfg.seed).permutation(len(x_tr))[: cfg.train_size]
        x_tr, t_tr = x_tr[keep], t_tr[keep]
    if cfg.standardize:
        x_tr, x_te = _standardize(x_tr, x_te)
        if task == "regression":
            t_tr, t_te = _standardize(t_tr[:, None], t_te[:, None])
            t_tr, t_te = t_tr[:, 0], t_te[:, 0]
    if task == "multiclass":
        out_dim = int(t.max()) + 1
        tt_tr = torch.as_tensor(t_tr, dtype=torch.long)
        tt_te = torch.as_tensor(t_te, dtype=torch.long)
    else:
        out_dim = 1
        tt_tr = torch.as_tensor(t_tr, dtype=torch.float32)[:, None]
        tt_te = torch.as_tensor(t_te, dtype=torch.float32)[:, None]
    return Dataset(
        cfg.name,
        torch.as_tensor(x_tr, dtype=torch.float32),
        tt_tr,
        torch.as_tensor(x_te, dtype=torch.float32),
        tt_te,
        task,
        out_dim,
    )


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load a bundled data set and split it with :func:`split_dataset`."""
    return split_dataset(*raw_arrays(cfg.name), cfg)
