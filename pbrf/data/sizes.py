"""How many examples each split holds, from the config alone (no file access).

One implementation serves the config layer (:func:`split_sizes`, on the published sizes) and the
loaders (:func:`train_counts`, on the rows actually read), so the two always agree. The
training pool (the official training split, or what ``test_fraction`` leaves) is reduced in
this order: ``fraction`` of it is kept, ``validation_fraction`` of that is held out, and
``train_size`` caps what remains. Fractions are rounded half up to whole examples.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from pbrf.data.registry import get_spec

if TYPE_CHECKING:
    from pbrf.data.config import DataConfig


class TrainCounts(NamedTuple):
    kept: int  # after ``fraction``
    validation: int
    train: int  # after the validation hold-out and the ``train_size`` cap


class SplitSizes(NamedTuple):
    train: int
    validation: int
    test: int


def count_of(n: int, fraction: float) -> int:
    """``fraction`` of ``n`` examples, rounded half up."""
    return math.floor(n * fraction + 0.5)


def holdout_count(n: int, test_fraction: float) -> int:
    """Examples scikit-learn's ``train_test_split`` puts in the test split (it rounds up)."""
    return math.ceil(n * test_fraction)


def train_counts(n_pool: int, cfg: DataConfig) -> TrainCounts:
    """Sizes of the training and validation splits drawn from a pool of ``n_pool`` examples.

    ``ValueError`` naming the field when a setting leaves no example to train on, or holds out
    a validation fraction that rounds to no example.
    """
    kept = n_pool if cfg.fraction is None else count_of(n_pool, cfg.fraction)
    if kept < 1:
        raise ValueError(
            f"fraction={cfg.fraction} keeps none of the {n_pool} training examples of {cfg.name!r}"
        )
    n_val = count_of(kept, cfg.validation_fraction)
    if cfg.validation_fraction > 0 and n_val < 1:
        raise ValueError(
            f"validation_fraction={cfg.validation_fraction} of {kept} training examples of "
            f"{cfg.name!r} is no example; use 0.0 or a larger fraction"
        )
    if kept - n_val < 1:
        raise ValueError(
            f"validation_fraction={cfg.validation_fraction} leaves no training example of "
            f"the {kept} of {cfg.name!r}"
        )
    n_train = kept - n_val
    if cfg.train_size is not None:
        n_train = min(n_train, cfg.train_size)
    return TrainCounts(kept, n_val, n_train)


def split_sizes(cfg: DataConfig) -> SplitSizes:
    """Train / validation / test sizes of the published data set under ``cfg``."""
    spec = get_spec(cfg.name)
    if spec.count_unit == "tokens":
        per = cfg.seq_len + 1  # one example: seq_len inputs and the token after each
        pool, n_test = spec.train_count // per, (spec.test_count or 0) // per
        n_val = (spec.valid_count or 0) // per
        if min(pool, n_test, n_val) < 1:
            raise ValueError(
                f"seq_len={cfg.seq_len} leaves a split of {cfg.name!r} without a whole sequence"
            )
    elif spec.test_count is None:
        n_test = holdout_count(spec.train_count, cfg.test_fraction)
        pool, n_val = spec.train_count - n_test, None
        if pool < 1:
            raise ValueError(
                f"test_fraction={cfg.test_fraction} leaves no training example of {cfg.name!r}"
            )
    else:
        pool, n_test, n_val = spec.train_count, spec.test_count, None
    counts = train_counts(pool, cfg)
    if cfg.test_size is not None:
        n_test = min(n_test, cfg.test_size)
    return SplitSizes(counts.train, counts.validation if n_val is None else n_val, n_test)
