"""scikit-learn's bundled data sets as raw arrays (scikit-learn is imported lazily: ~1.5 s)."""

from __future__ import annotations

import numpy as np

from pbrf.data.registry import SPECS

BUNDLED_TASKS: dict[str, str] = {n: s.task for n, s in SPECS.items() if s.bundled}


def raw_arrays(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, t, task)`` of a bundled data set, before any split: float64 features, int64 class
    labels (multiclass) or float64 targets."""
    if name not in BUNDLED_TASKS:
        raise ValueError(f"unknown bundled data set {name!r}; choose one of {list(BUNDLED_TASKS)}")
    from sklearn import datasets as skd

    bunch = getattr(skd, f"load_{name}")()
    task = BUNDLED_TASKS[name]
    dtype = np.int64 if task == "multiclass" else np.float64
    return np.asarray(bunch.data, dtype=np.float64), bunch.target.astype(dtype), task
