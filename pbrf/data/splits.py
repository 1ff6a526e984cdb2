"""Seeded split, subset and standardization of arrays (shared by every loader).

Random streams are independent per purpose: ``fraction``, ``validation_fraction`` and
``test_size`` draw from ``default_rng([seed, k])``; the ``train_size`` cap and the test hold-out
(scikit-learn's ``train_test_split``, stratified for classification) use ``seed`` itself, as
they always have, so bundled sets split exactly as before when the new settings are unused.
"""

from __future__ import annotations

import numpy as np

from pbrf.data.config import DataConfig
from pbrf.data.sizes import train_counts

_FRACTION, _VALIDATION, _TEST = 1, 2, 3


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def train_val_indices(n_pool: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices into a training pool of ``n_pool`` examples."""
    counts = train_counts(n_pool, cfg)
    idx = np.arange(n_pool)
    if counts.kept < n_pool:
        idx = idx[_rng(cfg.seed, _FRACTION).permutation(n_pool)[: counts.kept]]
    val = idx[:0]
    if counts.validation:
        perm = _rng(cfg.seed, _VALIDATION).permutation(len(idx))
        val, idx = idx[perm[: counts.validation]], idx[perm[counts.validation :]]
    if counts.train < len(idx):
        idx = idx[np.random.default_rng(cfg.seed).permutation(len(idx))[: counts.train]]
    return idx, val


def test_indices(n_test: int, cfg: DataConfig) -> np.ndarray:
    """Indices of the test examples kept under ``test_size``."""
    if cfg.test_size is None or cfg.test_size >= n_test:
        return np.arange(n_test)
    return _rng(cfg.seed, _TEST).permutation(n_test)[: cfg.test_size]


def holdout(t: np.ndarray, classify: bool, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(pool, test)`` indices: ``test_fraction`` held out, stratified by ``t`` if ``classify``."""
    from sklearn.model_selection import train_test_split  # lazy: scikit-learn is slow to import

    pool, test = train_test_split(
        np.arange(len(t)),
        test_size=cfg.test_fraction,
        random_state=cfg.seed,
        stratify=t if classify else None,
    )
    return pool, test


def moments(train: np.ndarray, axis: int | tuple[int, ...] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``axis``; a zero deviation becomes 1 (left centred)."""
    mean, std = train.mean(axis=axis), train.std(axis=axis)
    return mean, np.where(std > 0, std, 1.0)
