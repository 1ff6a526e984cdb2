"""Split, subsample and standardize a table ``(x, t)`` that has no official test split.

Used by the bundled scikit-learn sets and the UCI files alike (Appendix E.3: "we normalized the
input features to have zero mean and unit variance"; regression targets too). Statistics come
from the final training split; a constant feature is left centred.
"""

from __future__ import annotations

import numpy as np
import torch

from pbrf.data.config import DataConfig
from pbrf.data.dataset import Dataset
from pbrf.data.registry import signature
from pbrf.data.splits import holdout, moments, test_indices, train_val_indices


def split_dataset(x: np.ndarray, t: np.ndarray, task: str, cfg: DataConfig) -> Dataset:
    """Hold out ``test_fraction`` (stratified for classification), then draw the training and
    validation splits and caps (:mod:`pbrf.data.splits`) and standardize.

    ``x``: ``(N, D)`` float64; ``t``: ``(N,)`` int64 labels (multiclass) or float64 (binary 0/1,
    regression).
    """
    classify = task in ("binary", "multiclass")
    pool, test = holdout(t, classify, cfg)
    tr, va = train_val_indices(len(pool), cfg)
    parts = (pool[tr], pool[va], test[test_indices(len(test), cfg)])
    xs = [x[i] for i in parts]
    ts = [t[i] if task == "multiclass" else t[i][:, None] for i in parts]
    if cfg.standardize:
        mean, std = moments(xs[0])
        xs = [(a - mean) / std for a in xs]
        if task == "regression":
            mean, std = moments(ts[0])
            ts = [(a - mean) / std for a in ts]
    tdtype = torch.long if task == "multiclass" else torch.float32
    xt = [torch.as_tensor(a, dtype=torch.float32) for a in xs]
    tt = [torch.as_tensor(a, dtype=tdtype) for a in ts]
    return Dataset(
        cfg.name,
        xt[0],
        tt[0],
        xt[2],
        tt[2],
        task,
        signature(cfg).output_dim,
        x_val=xt[1],
        t_val=tt[1],
    )
