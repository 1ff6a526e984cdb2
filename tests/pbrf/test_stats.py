"""Bootstrap intervals and jackknife over removals, against closed forms, scipy and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pbrf.metrics import pearson, spearman
from pbrf.stats import (
    Interval,
    batched_pearson,
    batched_rankdata,
    bootstrap_correlation,
    bootstrap_correlation_difference,
    bootstrap_indices,
    bootstrap_mean,
    correlation,
    jackknife_correlation,
)

Z975 = stats.norm.ppf(0.975)
# Same numbers computed two ways in float64 (sums of ≤ 400 terms): agreement to ~1e-13.
EXACT_ATOL = 1e-12


def _bivariate(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(size=(n, 2))
    return z[:, 0], rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]


def _spearman_rows(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Row-wise Spearman from scipy's ranks (a vectorized statistic for scipy.stats.bootstrap)."""
    ra, rb = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    rb = rb - rb.mean(axis=axis, keepdims=True)
    return (ra * rb).sum(axis) / np.sqrt((ra * ra).sum(axis) * (rb * rb).sum(axis))


def _pearson_rows(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.pearsonr(a, b, axis=axis)[0]


def _tied_pair(seed: int, n: int = 20, decimals: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Strongly correlated data (r ≈ 0.9), by default rounded so that both sides have ties."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.9 * a + 0.45 * rng.normal(size=n)
    return (a, b) if decimals is None else (np.round(a, decimals), np.round(b, decimals))


# ---------------------------------------------------------------- point estimates and ranks


def test_batched_rankdata_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(50, 15)), 0)  # many ties per row
    got = batched_rankdata(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, stats.rankdata(x, axis=1))  # half-integers: exact


def test_correlations_match_scipy_and_metrics():
    a, b = _tied_pair(1)
    r_p, r_s = stats.pearsonr(a, b)[0], stats.spearmanr(a, b)[0]
    assert correlation(a, b, method="pearson") == pytest.approx(r_p, abs=EXACT_ATOL)
    assert correlation(a, b, method="spearman") == pytest.approx(r_s, abs=EXACT_ATOL)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert correlation(ta, tb) == pytest.approx(pearson(ta, tb), abs=EXACT_ATOL)
    assert correlation(ta, tb, method="spearman") == pytest.approx(spearman(ta, tb), abs=EXACT_ATOL)
    rows = np.stack([a, b, -a])
    np.testing.assert_allclose(
        batched_pearson(torch.from_numpy(rows), torch.from_numpy(np.stack([b, a, b]))).numpy(),
        [r_p, r_p, -r_p],
        atol=EXACT_ATOL,
    )


def test_constant_rows_are_nan_even_when_rounding_leaves_a_residual():
    # 0.1 repeated: its float mean is not exactly 0.1, so a centred norm would not be zero
    a = torch.full((2, 7), 0.1, dtype=torch.float64)
    b = torch.randn(2, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(batched_pearson(a, b)).all()
    assert torch.isnan(batched_pearson(b, a)).all()
    assert math.isnan(correlation(a[0], b[0], method="spearman"))


# ---------------------------------------------------------------- bootstrap of the mean


def test_bootstrap_mean_se_matches_ideal_bootstrap():
    """Ideal bootstrap SE of a mean = σ̂_plugin/√n (ddof 0), exactly, for any data."""
    x = np.random.default_rng(2).exponential(size=20)  # skewed on purpose
    resamples = 20_000
    iv = bootstrap_mean(x, resamples=resamples, seed=3)
    # Monte-Carlo relative SD of an SD from B replicates ≈ √((κ−1)/(4B)) ≈ 0.0054 here
    # (κ ≈ 3.3 for the mean of 20 exponentials): 0.025 is ≈ 5 of those.
    rtol = 0.025
    assert iv.se == pytest.approx(x.std(ddof=0) / math.sqrt(x.size), rel=rtol)
    assert iv.estimate == pytest.approx(x.mean(), abs=EXACT_ATOL)
    assert iv.low < iv.estimate < iv.high
    assert (iv.n, iv.resamples, iv.degenerate, iv.method) == (20, resamples, 0, "bca")


def test_bootstrap_mean_interval_matches_normal_theory_for_large_n():
    x = np.random.default_rng(4).normal(size=400)
    iv = bootstrap_mean(x, resamples=10_000, seed=5)
    half = Z975 * x.std(ddof=0) / math.sqrt(x.size)
    # Endpoint noise measured over 40 data sets/seeds: SD 0.021 half-widths (quantiles of 10⁴
    # replicates plus BCa's sample-skewness correction); 0.08 half-widths is ≈ 4 SD.
    atol = 0.08 * half
    assert iv.low == pytest.approx(x.mean() - half, abs=atol)
    assert iv.high == pytest.approx(x.mean() + half, abs=atol)


def test_bootstrap_mean_coverage_at_m20_matches_theory():
    """For normal data the bootstrap interval ≈ x̄ ± z·σ̂_plugin/√n, whose exact coverage is
    P(|t_{n−1}| < z·√((n−1)/n)) = 0.929 at n = 20 — below the nominal 0.95, as it should be."""
    n, trials = 20, 1000
    expected = 2 * stats.t.cdf(Z975 * math.sqrt((n - 1) / n), n - 1) - 1
    x = np.random.default_rng(6).normal(size=(trials, n))
    covered = [
        (iv := bootstrap_mean(row, resamples=1000, seed=i)).low <= 0.0 <= iv.high
        for i, row in enumerate(x)
    ]
    # binomial SD of the observed share; 4 SD + 0.01 for BCa/finite-B departures from the ideal
    # percentile interval (measured: +0.003 over 4000 trials)
    tol = 4 * math.sqrt(expected * (1 - expected) / trials) + 0.01
    assert np.mean(covered) == pytest.approx(expected, abs=tol)


# ---------------------------------------------------------------- bootstrap of a correlation


def test_pearson_interval_matches_fisher_z_for_large_n():
    a, b = _bivariate(np.random.default_rng(7), 400, 0.6)
    iv = bootstrap_correlation(a, b, resamples=4000, seed=8)
    z, h = math.atanh(iv.estimate), Z975 / math.sqrt(a.size - 3)
    lo, hi = math.tanh(z - h), math.tanh(z + h)
    # The bootstrap estimates r's spread from the data (4th moments), Fisher assumes normality:
    # over 100 simulated samples the endpoints differed by SD 0.06 half-widths; allow 4 SD.
    atol = 0.25 * (hi - lo) / 2
    assert iv.low == pytest.approx(lo, abs=atol)
    assert iv.high == pytest.approx(hi, abs=atol)


def _bca_reference(estimate: float, reps: np.ndarray, loo: np.ndarray, level: float):
    """Efron & Tibshirani (1993) eq. 14.9–14.15, written independently with scipy/numpy."""
    reps = reps[~np.isnan(reps)]
    share = (np.sum(reps < estimate) + 0.5 * np.sum(reps == estimate)) / reps.size
    z0 = stats.norm.ppf(share)
    d = loo.mean() - loo
    accel = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    z = stats.norm.ppf([(1 - level) / 2, (1 + level) / 2])
    alpha = stats.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    return np.quantile(reps, alpha), reps.std(ddof=1)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_bca_matches_brute_force_on_the_same_resamples(method):
    a, b = _tied_pair(9)
    resamples, level = 400, 0.9
    scipy_corr = {
        "pearson": lambda u, v: stats.pearsonr(u, v)[0],
        "spearman": lambda u, v: stats.spearmanr(u, v)[0],
    }[method]
    idx = bootstrap_indices(a.size, resamples, seed=10).numpy()
    reps = np.array([scipy_corr(a[i], b[i]) for i in idx])
    loo = np.array([scipy_corr(np.delete(a, i), np.delete(b, i)) for i in range(a.size)])
    (lo, hi), se = _bca_reference(scipy_corr(a, b), reps, loo, level)
    iv = bootstrap_correlation(a, b, method=method, resamples=resamples, level=level, seed=10)
    assert (iv.low, iv.high, iv.se) == pytest.approx((lo, hi, se), abs=EXACT_ATOL)


@pytest.mark.parametrize(
    ("method", "statistic"), [("pearson", _pearson_rows), ("spearman", _spearman_rows)]
)
def test_bca_matches_scipy_bootstrap(method, statistic):
    """Same method, independent resamples: endpoints agree within Monte-Carlo error.

    Over 10 seeds each (B = 20 000) the two implementations' endpoints had SDs whose
    combination is ≤ 0.0085 (lower) and ≤ 0.0015 (upper); the tolerances are ≈ 4 of those.
    They are tight enough to tell BCa from the percentile interval on this r ≈ 0.9 sample
    (which differ by 0.056/0.005 for Pearson, 0.073/0.014 for Spearman).
    """
    a, b = _tied_pair(3, decimals=1 if method == "spearman" else None)
    atol_low, atol_high = 0.035, 0.006
    iv = bootstrap_correlation(a, b, method=method, resamples=20_000, seed=11)
    ref = stats.bootstrap(
        (a, b),
        statistic,
        paired=True,
        vectorized=True,
        method="BCa",
        n_resamples=20_000,
        random_state=12,
    ).confidence_interval
    assert iv.low == pytest.approx(ref.low, abs=atol_low)
    assert iv.high == pytest.approx(ref.high, abs=atol_high)


def test_pearson_coverage_at_m20():
    """Coverage of the 95% BCa interval for ρ = 0.5 at M = 20.

    Nonparametric intervals for r undercover at n = 20 (the spread of r is estimated from 20
    points; we measured 0.938 over 4000 trials). Accept [0.90, 0.975]: nominal − 0.05 to
    nominal + 0.025, each ≥ 3.7 binomial SDs (0.0098 at 600 trials) from the measured 0.938.
    """
    rng = np.random.default_rng(13)
    rho, trials = 0.5, 600
    covered = []
    for i in range(trials):
        a, b = _bivariate(rng, 20, rho)
        iv = bootstrap_correlation(a, b, resamples=1000, seed=i)
        covered.append(iv.low <= rho <= iv.high)
    assert 0.90 <= np.mean(covered) <= 0.975


def test_deterministic_for_a_seed_and_input_type():
    a, b = _tied_pair(14)
    first = bootstrap_correlation(a, b, method="spearman", seed=5)
    assert bootstrap_correlation(a, b, method="spearman", seed=5) == first
    assert bootstrap_correlation(a, b, method="spearman", seed=6) != first
    assert bootstrap_correlation(torch.from_numpy(a), list(b), method="spearman", seed=5) == first
    assert torch.equal(bootstrap_indices(20, 30, 5), bootstrap_indices(20, 30, 5))
    # float32 input is promoted, not computed in float32
    a32 = torch.from_numpy(a).float()
    assert bootstrap_mean(a32, seed=1) == bootstrap_mean(a32.double().numpy(), seed=1)


def test_degenerate_resamples_are_excluded_and_counted():
    a = np.array([0.0, 0.0, 0.0, 1.0])  # a resample without index 3 has constant a
    b = np.array([0.3, 0.1, 0.4, 0.2])
    resamples = 500
    idx = bootstrap_indices(a.size, resamples, seed=15).numpy()
    expected = int(np.sum((np.ptp(a[idx], axis=1) == 0) | (np.ptp(b[idx], axis=1) == 0)))
    assert expected > 100  # (3/4)^4 ≈ 32% of resamples: the case is really exercised
    iv = bootstrap_correlation(a, b, resamples=resamples, seed=15)
    assert iv.degenerate == expected
    assert iv.valid == resamples - expected
    assert math.isfinite(iv.low) and math.isfinite(iv.high)
    assert -1.0 <= iv.low <= iv.high <= 1.0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs_give_nan_intervals(n):
    x = np.arange(n, dtype=float)
    m = bootstrap_mean(x)
    assert math.isnan(m.low) and math.isnan(m.high)
    assert math.isnan(m.estimate) if n == 0 else m.estimate == pytest.approx(x.mean())
    c = bootstrap_correlation(x, x**2)
    assert math.isnan(c.low) and math.isnan(c.high) and c.n == n
    assert (c.estimate == pytest.approx(1.0)) if n == 2 else math.isnan(c.estimate)


def test_constant_and_invalid_inputs():
    const = np.full(20, 0.1)
    other = np.arange(20.0)
    m = bootstrap_mean(const)
    assert m.estimate == pytest.approx(0.1) and math.isnan(m.low) and math.isnan(m.high)
    for method in ("pearson", "spearman"):
        c = bootstrap_correlation(other, const, method=method)
        assert math.isnan(c.estimate) and math.isnan(c.low) and c.degenerate == c.resamples
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_mean([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="length"):
        bootstrap_correlation(other, other[:-1])
    with pytest.raises(ValueError, match="method"):
        bootstrap_correlation(other[:2], other[:2], method="kendall")
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_mean(np.ones((3, 3)))
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean(other, level=95)
    assert isinstance(m, Interval)


# ---------------------------------------------------------------- jackknife


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_jackknife_matches_brute_force(method):
    a, b = _tied_pair(16)
    a[7], b[7] = 4.0, -4.0  # one removal that carries the correlation
    corr = {"pearson": stats.pearsonr, "spearman": stats.spearmanr}[method]
    full = corr(a, b)[0]
    loo = np.array([corr(np.delete(a, i), np.delete(b, i))[0] for i in range(a.size)])
    jk = jackknife_correlation(torch.from_numpy(a), b, method=method)
    assert jk.estimate == pytest.approx(full, abs=EXACT_ATOL)
    np.testing.assert_allclose(jk.loo, loo, atol=EXACT_ATOL, rtol=0)
    i = int(np.argmax(np.abs(loo - full)))
    assert jk.most_influential == i == 7
    assert jk.change == pytest.approx(loo[i] - full, abs=EXACT_ATOL)
    assert jk.change > 0  # without the planted point the correlation goes up


def test_jackknife_degenerate_cases():
    # without index 2, a = (0, 0) is constant: that leave-one-out value is undefined and skipped
    jk = jackknife_correlation([0.0, 0.0, 1.0], [1.0, 2.0, 0.0])
    assert math.isnan(jk.loo[2]) and jk.loo[:2] == pytest.approx((-1.0, -1.0))
    assert jk.most_influential == 0  # first of the two equal largest changes
    assert jk.change == pytest.approx(-1.0 - stats.pearsonr([0, 0, 1], [1, 2, 0])[0])
    const = jackknife_correlation(np.ones(5), np.arange(5.0))
    assert const.most_influential == -1 and math.isnan(const.change)
    tiny = jackknife_correlation([1.0, 2.0], [2.0, 1.0])
    assert tiny.most_influential == -1 and len(tiny.loo) == 2


@pytest.mark.parametrize("n", [4, 5, 6, 8, 20])
def test_intervals_move_continuously_with_the_data(n):
    """A 1e-9 relative change of every input moves no endpoint by more than 1e-6.

    At small M many resamples draw every removal once; their replicate equals the estimate up to
    rounding, and before such ties were resolved exactly the endpoints jumped by up to 1.6 here.
    """
    for seed in range(40):
        g = np.random.default_rng(1000 * n + seed)
        a = g.normal(size=n)
        b = a + g.normal(size=n) * g.choice([0.05, 0.3, 1.0])
        pa, pb = (1 + 1e-9 * g.normal(size=n) for _ in range(2))
        pairs = [
            (bootstrap_mean(np.abs(b)), bootstrap_mean(np.abs(b) * pb)),
            *(
                (
                    bootstrap_correlation(a, b, method=m, resamples=1000),
                    bootstrap_correlation(a * pa, b * pb, method=m, resamples=1000),
                )
                for m in ("pearson", "spearman")
            ),
        ]
        for before, after in pairs:
            assert before.degenerate == after.degenerate
            assert abs(after.low - before.low) < 1e-6, (seed, before, after)
            assert abs(after.high - before.high) < 1e-6, (seed, before, after)


def test_correlation_difference_matches_brute_force_on_the_same_resamples():
    """corr(a, b) − corr(a, c) with BCa limits, against scipy's Spearman in a plain loop over
    the same resampled triples and the same jackknife (float64 both ways)."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=15)
    b = a + 0.3 * rng.normal(size=15)
    c = a + 1.5 * rng.normal(size=15)
    resamples, level = 400, 0.9

    def diff(i):
        return stats.spearmanr(a[i], b[i])[0] - stats.spearmanr(a[i], c[i])[0]

    idx = bootstrap_indices(a.size, resamples, seed=4).numpy()
    reps = np.array([diff(i) for i in idx])
    loo = np.array([diff(np.delete(np.arange(a.size), i)) for i in range(a.size)])
    estimate = diff(np.arange(a.size))
    (lo, hi), se = _bca_reference(estimate, reps, loo, level)
    iv = bootstrap_correlation_difference(a, b, c, resamples=resamples, level=level, seed=4)
    assert iv.estimate == pytest.approx(estimate, abs=EXACT_ATOL)
    assert (iv.low, iv.high, iv.se) == pytest.approx((lo, hi, se), abs=EXACT_ATOL)
    assert iv.low < iv.estimate < iv.high and iv.estimate > 0  # b tracks a more than c does
    same = bootstrap_correlation_difference(a, b, b, resamples=resamples)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
