"""Rounding-floor measures against hand-computed IEEE-754 cases and actual float32 storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pbrf.precision import (
    LOSS_FLOOR_ULPS,
    loss_change_ulps,
    response_ulps,
    rounding_verdict,
    ulp,
    vanishing_fraction,
)

U32 = 2.0**-23  # ulp(1.0) in float32
U64 = 2.0**-52  # ulp(1.0) in float64
# Ratios of powers of two and norms of a few of them: exact up to one float64 rounding.
EXACT_RTOL = 1e-15


def test_ulp_hand_values():
    f32 = torch.tensor([1.0, -1.0, 1.5, 2.0, 0.5, 0.0, 1024.0], dtype=torch.float32)
    expected = [U32, U32, U32, 2 * U32, U32 / 2, 2.0**-149, 2.0**-13]
    assert ulp(f32).tolist() == expected
    assert ulp(f32).dtype == torch.float32
    assert ulp(torch.tensor([1.0, 3.0], dtype=torch.float64)).tolist() == [U64, 2 * U64]
    # dtype: the spacing of x rounded to that dtype
    assert ulp(torch.tensor(1.0, dtype=torch.float64), torch.float32).item() == U32
    assert ulp(torch.tensor(1.0), torch.float16).item() == 2.0**-10
    assert ulp(torch.tensor(1.0), torch.bfloat16).item() == 2.0**-7
    assert ulp(1.0).item() == U64  # a Python float is float64
    assert torch.isnan(ulp(torch.tensor([math.inf, -math.inf, math.nan]))).all()


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
def test_ulp_matches_numpy_spacing(np_dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1000) * 10.0 ** rng.uniform(-30, 30, 1000)).astype(np_dtype)
    np.testing.assert_array_equal(ulp(torch.from_numpy(x)).numpy(), np.abs(np.spacing(x)))


def test_vanishing_hand_cases_float32():
    h = U32 / 2  # half an ulp above 1.0
    theta = torch.tensor([1.0] * 6 + [1.0 + U32, 0.0], dtype=torch.float32)
    delta = torch.tensor(
        [
            0.49 * U32,  # below half an ulp: lost
            0.51 * U32,  # above: kept (rounds to 1 + 2⁻²³)
            h,  # exact tie at an even mantissa: rounds back to 1.0, lost
            -0.2 * U32,  # below 1.0 the spacing is 2⁻²⁴, half of it 0.25·2⁻²³: lost
            -0.3 * U32,  # ... kept, although |Δ| < ulp(1.0)/2
            0.0,  # nothing to store: lost
            h,  # exact tie at an odd mantissa: rounds up to 1 + 2⁻²², kept
            2.0**-151,  # a quarter of the smallest subnormal: lost
        ],
        dtype=torch.float64,
    )
    lost = [True, False, True, True, False, True, False, True]
    stored_lost = ((theta.double() + delta).float() == theta).tolist()  # the sum is exact
    assert stored_lost == lost
    for i, expected in enumerate(lost):
        assert vanishing_fraction(theta[i : i + 1], delta[i : i + 1]).item() == float(expected)
    assert vanishing_fraction(theta, delta).item() == sum(lost) / len(lost)


def test_vanishing_hand_cases_float64_and_dtype_argument():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64)
    delta = torch.tensor([[0.9 * U64 / 2, 1.1 * U64 / 2], [1e-9, 1e-9]], dtype=torch.float64)
    assert vanishing_fraction(theta, delta).tolist() == [0.5, 0.0]
    # in float32 half a spacing at 1.0 is 2⁻²⁴ ≈ 6e-8: all of these vanish, 1e-6 does not
    assert vanishing_fraction(theta, delta, torch.float32).tolist() == [1.0, 1.0]
    assert vanishing_fraction(theta, torch.full((2,), 1e-6), torch.float32).item() == 0.0


def _thetas(rng: np.random.Generator, d: int) -> torch.Tensor:
    mag = 10.0 ** rng.uniform(-3, 2, d)
    theta = torch.from_numpy(np.where(rng.random(d) < 0.5, -mag, mag)).float()
    theta[:20] = torch.tensor([2.0**k for k in range(-5, 5)] * 2, dtype=torch.float32)
    theta[10:20] *= -1.0
    theta[30] = 0.0
    return theta


def test_vanishing_fraction_counts_exactly_what_float32_storage_loses():
    rng = np.random.default_rng(1)
    m, d = 6, 2000
    theta = _thetas(rng, d)
    # Δ = k/64 ulps, k ∈ [−96, 96]: the float64 sum θ + Δ is exact, then rounded once to float32;
    # it hits ties and the finer spacing below powers of two on purpose.
    k = torch.from_numpy(rng.integers(-96, 97, size=(m, d))).double()
    delta = ulp(theta).double() * k / 64
    stored = (theta.double() + delta).float()
    lost = (stored == theta).double().mean(dim=1)
    torch.testing.assert_close(vanishing_fraction(theta, delta), lost, rtol=0, atol=0)
    assert 0.2 < float(lost.mean()) < 0.6  # both outcomes are well represented

    # Δ held in float32 and added in float32 (IEEE: correctly rounded), continuous magnitudes
    delta32 = (ulp(theta) * torch.from_numpy(rng.uniform(-1.5, 1.5, size=(m, d))).float()).float()
    lost32 = ((theta + delta32) == theta).double().mean(dim=1)
    torch.testing.assert_close(vanishing_fraction(theta, delta32), lost32, rtol=0, atol=0)


def test_vanishing_fraction_for_a_1_over_n_response():
    """ε = 1/N scaled responses, stored next to O(1) weights, vanish in float32, not float64."""
    rng = np.random.default_rng(2)
    theta = torch.from_numpy(rng.standard_normal(5000))
    delta = torch.from_numpy(rng.standard_normal((3, 5000))) * 1e-9  # e.g. ε·g with tiny g
    assert (vanishing_fraction(theta, delta, torch.float32) > 0.9).all()
    assert (vanishing_fraction(theta, delta) == 0).all()


def test_response_ulps_hand_case():
    theta = torch.tensor([1.0, 2.0], dtype=torch.float32)
    delta = torch.tensor([[U32, 0.0], [0.0, 0.0], [3 * U32, 4 * U32]], dtype=torch.float64)
    norm_ulp = U32 * math.sqrt(5.0)  # ‖(2⁻²³, 2⁻²²)‖
    expected = torch.tensor([U32, 0.0, 5 * U32], dtype=torch.float64) / norm_ulp
    torch.testing.assert_close(response_ulps(theta, delta), expected, rtol=EXACT_RTOL, atol=0)
    # in float64 the same Δ is 2²⁹ times more ulps
    torch.testing.assert_close(
        response_ulps(theta.double(), delta), expected * 2.0**29, rtol=EXACT_RTOL, atol=0
    )
    with pytest.raises(ValueError, match="does not end"):
        response_ulps(theta, torch.zeros(2, 3))


def test_loss_change_ulps_hand_cases():
    # 0.5 ∈ [0.5, 1): ulp 2⁻²⁴; 2.3 ∈ [2, 4): ulp 2⁻²²
    change = torch.tensor([3 * 2.0**-24, -(2.0**-20)], dtype=torch.float64)
    base = torch.tensor([0.5, 2.3], dtype=torch.float64)
    assert loss_change_ulps(change, base, torch.float32).tolist() == [3.0, 4.0]
    assert loss_change_ulps(change, base, torch.float64).tolist() == [3.0 * 2**29, 4.0 * 2**29]
    # broadcast a scalar base loss; numpy input
    got = loss_change_ulps(np.array([1e-7, -2e-7]), 0.5, torch.float32)
    np.testing.assert_allclose(got.numpy(), [1e-7 / 2**-24, 2e-7 / 2**-24], rtol=EXACT_RTOL)


def test_loss_change_of_a_float32_evaluation_is_whole_ulps():
    """A change computed as L(θ') − L(θˢ) in float32 is a multiple of ulp(L) near L."""
    g = torch.Generator().manual_seed(3)
    losses = torch.rand(1000, generator=g) * 0.2 + 0.4  # per-example losses, mean ≈ 0.5
    base = losses.mean()
    changed = (losses + 1e-7 * torch.randn(1000, generator=g)).mean()
    u = loss_change_ulps(changed - base, base, torch.float32)
    assert float(u) == round(float(u))  # both in [0.5, 1): the difference is k·2⁻²⁴


def test_rounding_verdict_loss_floor():
    base = torch.tensor(0.5)
    ulp32 = 2.0**-24
    low = torch.tensor([1.0, 2.0, 4.0, 30.0]) * ulp32  # median 3 ulps (mean of the middle two)
    v = rounding_verdict(low, base, torch.float32)
    assert (v.loss_ulps_min, v.loss_ulps_median) == (1.0, 3.0)
    assert v.loss_at_floor and v.at_floor and v.params_at_floor is None
    assert math.isnan(v.vanishing_median) and v.m == 4 and v.dtype == "float32"
    assert "at the rounding floor" in v.message() and "3 ulps" in v.message()
    # the same changes are 2²⁹ times more ulps in float64
    v64 = rounding_verdict(low, base, torch.float64)
    assert not v64.at_floor and "above the rounding floor" in v64.message()
    # the threshold is strict: a median of exactly LOSS_FLOOR_ULPS is not at the floor
    at = torch.full((3,), LOSS_FLOOR_ULPS * ulp32)
    assert not rounding_verdict(at, base, torch.float32).loss_at_floor


def test_rounding_verdict_parameter_floor():
    theta = torch.ones(100)
    delta = torch.full((3, 100), 0.1 * U32, dtype=torch.float64)
    delta[0, :60] = 10 * U32  # first response: 40% vanish; the others: 100%
    big_change = torch.full((3,), 1e-3)
    v = rounding_verdict(big_change, 0.5, torch.float32, theta_s=theta, delta=delta)
    assert not v.loss_at_floor and v.params_at_floor and v.at_floor
    assert (v.vanishing_median, v.vanishing_max) == (1.0, 1.0)
    # ‖ulp(θ)‖ = 10·2⁻²³; responses 2 and 3 have ‖Δ‖ = 0.1·10·2⁻²³
    assert (v.response_ulps_min, v.response_ulps_median) == pytest.approx(
        (0.1, 0.1), rel=EXACT_RTOL
    )
    assert response_ulps(theta, delta)[0].item() == pytest.approx(
        math.sqrt(60 * 100 + 40 * 0.01) / 10, rel=EXACT_RTOL
    )
    assert "100.0% of parameter coordinates" in v.message()
    with pytest.raises(ValueError, match="both"):
        rounding_verdict(big_change, 0.5, torch.float32, theta_s=theta)
