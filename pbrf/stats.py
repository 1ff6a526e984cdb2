"""Uncertainty over the M removals: bootstrap intervals and leave-one-out sensitivity.

A study reports, over M ≈ 20 removed training examples, the mean of a per-removal gap and the
correlation between influence-predicted and actual test-loss changes. Both are estimates from M
paired observations; this module says how far they could move.

Interval method: BCa (bias-corrected and accelerated; Efron 1987) from one paired resampling of
the removals, with the acceleration from the jackknife. At M ≈ 20 the bootstrap distribution of a
correlation is skewed and median-biased, more so as ρ nears ±1 (the PBRF column sits at
0.8–0.99), because r is bounded; the percentile interval is only first-order accurate and
ignores both effects, while BCa corrects the median bias (z₀) and the skewness (acceleration a),
is second-order accurate and, like the percentile interval, respects monotone transformations
(it gives the same interval for r as for Fisher's z of r). Its extra cost is M jackknife
recomputations. The same holds for the mean of a gap over removals: gaps are non-negative
distances whose spread across removals can exceed their mean, so the mean's bootstrap
distribution is right-skewed at M = 20 and a symmetric or percentile interval is off on both
sides. Resampled removals are sorted within each resample, so resamples with the same multiset
of removals give bit-identical replicates, and a resample that draws every removal once (a
permutation, common at small M: 3.8 % of resamples at M = 5) is set to the estimate itself.
Without that, rounding noise scatters those replicates a few ulps either side of the estimate and
the bias correction z₀ jumps when the data change by rounding noise (PBRF_THREADS=1 vs 2); with
it the interval is a continuous function of the data. Its known weakness — an unstable z₀ when the estimate lies at the edge of the
bootstrap distribution — is handled by clipping the proportion (see :func:`_bca_limits`).

Everything is computed in float64 on the CPU; inputs may be numpy arrays, torch tensors or
sequences. Non-finite inputs raise ``ValueError``: a NaN change means a failed run upstream and
must not be silently resampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[float]
Method = Literal["pearson", "spearman"]

__all__ = [
    "Interval",
    "Jackknife",
    "batched_pearson",
    "batched_rankdata",
    "bootstrap_correlation",
    "bootstrap_correlation_difference",
    "bootstrap_indices",
    "bootstrap_mean",
    "correlation",
    "jackknife_correlation",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval.

    ``low``/``high`` are NaN when no interval exists (n < 3, constant input, or every resample
    degenerate). ``se`` is the standard deviation of the valid bootstrap replicates. ``degenerate``
    counts resamples whose statistic was undefined (a constant side for a correlation); they are
    excluded, so the interval rests on ``resamples − degenerate`` replicates.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    resamples: int
    method: str
    degenerate: int
    se: float

    @property
    def valid(self) -> int:
        """Replicates the interval rests on."""
        return self.resamples - self.degenerate

    def __str__(self) -> str:
        return (
            f"{self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}] "
            f"({self.level:.0%} {self.method}, n={self.n})"
        )


@dataclass(frozen=True)
class Jackknife:
    """Leave-one-out sensitivity of a correlation.

    ``loo[i]`` is the correlation without removal ``i`` (NaN where the rest is constant).
    ``most_influential`` is the index whose omission moves the correlation most, ``change`` the
    signed change ``loo[i] − estimate`` (without − with); ``-1`` and NaN when undefined.
    """

    estimate: float
    loo: tuple[float, ...]
    most_influential: int
    change: float
    method: str


def _as_1d(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} has non-finite values; drop or fix the failed removals first")
    return t


def _constant(x: Tensor) -> Tensor:
    """Rows (last dim) whose values are all exactly equal; exact, unlike a centred norm."""
    return x.amax(dim=-1) == x.amin(dim=-1)


def batched_rankdata(x: Tensor) -> Tensor:
    """Ranks 1..n along the last dim, ties given their average rank (``scipy.stats.rankdata``).

    Rank of ``x_i`` = (#values < x_i) + (#values ≤ x_i + 1) / 2, found by binary search in the
    sorted row: O(n log n) per row, no Python loop.
    """
    s = torch.sort(x, dim=-1).values.contiguous()
    below = torch.searchsorted(s, x.contiguous(), right=False)
    upto = torch.searchsorted(s, x.contiguous(), right=True)
    return (below + upto + 1).to(torch.float64) / 2


def batched_pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dim; NaN for rows where either side is constant."""
    ac = a - a.mean(dim=-1, keepdim=True)
    bc = b - b.mean(dim=-1, keepdim=True)
    r = (ac * bc).sum(-1) / torch.sqrt((ac * ac).sum(-1) * (bc * bc).sum(-1))
    r = r.clamp(-1.0, 1.0)
    return torch.where(_constant(a) | _constant(b), torch.full_like(r, math.nan), r)


def _batched_correlation(a: Tensor, b: Tensor, method: Method) -> Tensor:
    if method == "pearson":
        return batched_pearson(a, b)
    if method == "spearman":
        return batched_pearson(batched_rankdata(a), batched_rankdata(b))
    raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")


def correlation(a: ArrayLike, b: ArrayLike, *, method: Method = "pearson") -> float:
    """Pearson or Spearman (tie-averaged ranks) correlation; NaN when n < 2 or a side is constant."""
    x, y = _pair(a, b, method)
    if x.numel() < 2:
        return math.nan
    return float(_batched_correlation(x, y, method))


def _pair(a: ArrayLike, b: ArrayLike, method: str) -> tuple[Tensor, Tensor]:
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.numel() != y.numel():
        raise ValueError(f"paired samples differ in length: {x.numel()} and {y.numel()}")
    return x, y


def _loo_index(n: int) -> Tensor:
    """(n, n−1) indices: row i is 0..n−1 without i."""
    full = torch.arange(n).expand(n, n)
    keep = ~torch.eye(n, dtype=torch.bool)
    return full[keep].reshape(n, n - 1)


def _acceleration(loo: Tensor) -> float:
    """Jackknife acceleration a = Σd³ / (6 (Σd²)^{3/2}), d = mean(loo) − loo; 0 if undefined."""
    loo = loo[torch.isfinite(loo)]
    if loo.numel() < 3:
        return 0.0
    d = loo.mean() - loo
    ss = float((d * d).sum())
    return float((d**3).sum()) / (6.0 * ss**1.5) if ss > 0 else 0.0


def _quantile(sorted_values: Tensor, q: Tensor) -> Tensor:
    return torch.quantile(sorted_values, q.clamp(0.0, 1.0))


def _bca_limits(reps: Tensor, estimate: float, accel: float, level: float) -> tuple[float, float]:
    """BCa endpoints from valid replicates ``reps``.

    z₀ = Φ⁻¹(share of replicates below the estimate, ties counted half); the share is clipped to
    [1/(2B), 1 − 1/(2B)] so that an estimate outside the bootstrap distribution gives the
    extreme replicate instead of an infinite z₀.
    """
    b = reps.numel()
    share = (float((reps < estimate).sum()) + 0.5 * float((reps == estimate).sum())) / b
    share = min(max(share, 0.5 / b), 1.0 - 0.5 / b)
    z0 = torch.special.ndtri(torch.tensor(share, dtype=torch.float64))
    alpha = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    z = torch.special.ndtri(alpha)
    denom = 1 - accel * (z0 + z)
    adjusted = torch.special.ndtr(z0 + (z0 + z) / denom)
    # Past the pole of the BCa map (|a| large, tiny M) the formula flips sides; take its limit.
    adjusted = torch.where(denom > 0, adjusted, (z0 + z > 0).to(torch.float64))
    lo, hi = _quantile(reps, adjusted).tolist()
    return lo, hi


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_indices(n: int, resamples: int, seed: int = 0) -> Tensor:
    """The ``(resamples, n)`` int64 matrix of removal indices the bootstrap functions draw.

    Row b is the b-th resample; the same ``seed`` always gives the same matrix.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (resamples, n), generator=g)


def _resample_rows(n: int, resamples: int, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted resample indices and the mask of resamples that draw every removal exactly once.

    Sorting keeps each resample's multiset (so the statistic is unchanged) but makes replicates
    of equal multisets bit-identical; the mask marks replicates that equal the estimate exactly.
    """
    idx = torch.sort(bootstrap_indices(n, resamples, seed), dim=1).values
    return idx, (idx == torch.arange(n)).all(dim=1)


def bootstrap_mean(
    x: ArrayLike, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Mean over removals with a BCa bootstrap interval (see the module docstring).

    NaN interval when n < 3 or all values are equal (the estimate is still the mean).
    """
    _check(resamples, level)
    v = _as_1d(x, "x")
    n = v.numel()
    estimate = float(v.mean()) if n else math.nan
    if n < 3 or bool(_constant(v)):
        return Interval(estimate, math.nan, math.nan, level, n, resamples, "bca", 0, math.nan)
    idx, whole = _resample_rows(n, resamples, seed)
    reps = v[idx].mean(dim=1).masked_fill(whole, estimate)
    accel = _acceleration(v[_loo_index(n)].mean(dim=1))
    lo, hi = _bca_limits(torch.sort(reps).values, estimate, accel, level)
    se = float(reps.std(unbiased=True)) if resamples > 1 else math.nan
    return Interval(estimate, lo, hi, level, n, resamples, "bca", 0, se)


def bootstrap_correlation(
    a: ArrayLike,
    b: ArrayLike,
    *,
    method: Method = "pearson",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Correlation over paired removals with a BCa bootstrap interval (see the module docstring).

    Removals are resampled as pairs (one ``(resamples, n)`` index matrix). A resample in which
    either side is constant has no correlation: it is excluded and counted in ``degenerate``.
    NaN interval when n < 3, either input is constant, or no resample is valid.
    """
    _check(resamples, level)
    x, y = _pair(a, b, method)
    n = x.numel()
    estimate = float(_batched_correlation(x, y, method)) if n >= 2 else math.nan
    if n < 3 or math.isnan(estimate):
        return Interval(
            estimate, math.nan, math.nan, level, n, resamples, method, resamples, math.nan
        )
    return _bca_interval(
        lambda i, j: _batched_correlation(i, j, method),
        (x, y),
        estimate,
        resamples,
        level,
        seed,
        method,
    )


def _bca_interval(
    stat: Callable[..., Tensor],
    series: tuple[Tensor, ...],
    estimate: float,
    resamples: int,
    level: float,
    seed: int,
    method: str,
) -> Interval:
    """BCa interval of ``stat`` over removals resampled together across ``series`` (each
    ``(n,)``): replicates that draw every removal once equal ``estimate`` exactly; a NaN
    replicate (a constant side) is excluded and counted in ``degenerate``."""
    n = series[0].numel()
    idx, whole = _resample_rows(n, resamples, seed)
    reps = stat(*(t[idx] for t in series)).masked_fill(whole, estimate)
    ok = ~torch.isnan(reps)
    degenerate = int((~ok).sum())
    reps = reps[ok]
    if reps.numel() == 0:
        return Interval(
            estimate, math.nan, math.nan, level, n, resamples, method, degenerate, math.nan
        )
    loo = _loo_index(n)
    accel = _acceleration(stat(*(t[loo] for t in series)))
    lo, hi = _bca_limits(torch.sort(reps).values, estimate, accel, level)
    se = float(reps.std(unbiased=True)) if reps.numel() > 1 else math.nan
    return Interval(estimate, lo, hi, level, n, resamples, method, degenerate, se)


def jackknife_correlation(a: ArrayLike, b: ArrayLike, *, method: Method = "pearson") -> Jackknife:
    """The correlation without each removal, and the removal whose omission moves it most."""
    x, y = _pair(a, b, method)
    n = x.numel()
    estimate = float(_batched_correlation(x, y, method)) if n >= 2 else math.nan
    if n < 3:
        return Jackknife(estimate, (math.nan,) * n, -1, math.nan, method)
    loo_idx = _loo_index(n)
    loo = _batched_correlation(x[loo_idx], y[loo_idx], method)
    delta = loo - estimate
    if math.isnan(estimate) or bool(torch.isnan(delta).all()):
        return Jackknife(estimate, tuple(loo.tolist()), -1, math.nan, method)
    i = int(torch.nan_to_num(delta.abs(), nan=-1.0).argmax())
    return Jackknife(estimate, tuple(loo.tolist()), i, float(delta[i]), method)


def bootstrap_correlation_difference(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike,
    *,
    method: Method = "spearman",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """corr(a, b) − corr(a, c) over paired removals, with a BCa bootstrap interval.

    The paper's second finding (Section 6.1) in one number: with ``a`` the influence
    predictions, ``b`` the PBRF's and ``c`` leave-one-out retraining's actual test-loss
    changes, a positive difference says influence tracks the PBRF more than LOO. The triples
    are resampled together (the two correlations share ``a``, so they are not independent);
    a resample in which any side is constant is excluded and counted in ``degenerate``.
    """
    _check(resamples, level)
    x, y = _pair(a, b, method)
    _, z = _pair(a, c, method)

    def diff(ix: Tensor, iy: Tensor, iz: Tensor) -> Tensor:
        return _batched_correlation(ix, iy, method) - _batched_correlation(ix, iz, method)

    n = x.numel()
    estimate = float(diff(x, y, z)) if n >= 2 else math.nan
    if n < 3 or math.isnan(estimate):
        return Interval(
            estimate, math.nan, math.nan, level, n, resamples, method, resamples, math.nan
        )
    return _bca_interval(diff, (x, y, z), estimate, resamples, level, seed, method)
