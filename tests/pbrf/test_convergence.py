"""Tail share of an objective's decrease on synthetic histories of known shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pbrf.convergence import (
    convergence_messages,
    still_decreasing,
    tail_decrease,
    tail_steps,
)

# Closed forms evaluated in float64 vs the same ratio computed from the history: a few ulps.
RTOL = 1e-12


def test_tail_steps():
    assert tail_steps(1000, 0.1) == 100  # ⌈99.9⌉
    assert tail_steps(10, 0.1) == 1  # a 10-epoch run still has a tail
    assert tail_steps(31, 0.1) == 3  # 0.1·30 = 3.0000000000000004 in floating point
    assert tail_steps(2, 0.1) == 1
    assert tail_steps(201, 0.25) == 50
    with pytest.raises(ValueError, match="tail"):
        tail_steps(10, 1.0)
    with pytest.raises(ValueError, match="2 epochs"):
        tail_steps(1, 0.1)


def test_exponential_decay_matches_closed_form():
    e, c, a = 1000, 0.3, 2.0
    rates = torch.tensor([0.001, 0.005, 0.02, 0.1], dtype=torch.float64)
    t = torch.arange(e, dtype=torch.float64)[:, None]
    history = c + a * torch.exp(-rates * t)  # (E, M)
    k = e - 1 - 100
    last = e - 1
    expected = (torch.exp(-rates * k) - torch.exp(-rates * last)) / (1 - torch.exp(-rates * last))
    share = tail_decrease(history, tail=0.1)
    # h[k] − h[E−1] is a difference of two numbers ≤ c + a: it carries up to ~2 ulps of c + a
    # absolute error, which dominates once e^{−rk} underflows against c (r = 0.1)
    atol = 4 * np.spacing(c + a) / a
    torch.testing.assert_close(share, expected, rtol=RTOL, atol=atol)
    # r = 0.001: 6.2% of the decrease in the last 10%: still training; r ≥ 0.005: 0.44% or less
    assert share[0] == pytest.approx(0.0616, abs=1e-3)
    assert still_decreasing(history).tolist() == [True, False, False, False]
    assert still_decreasing(history, threshold=0.004).tolist() == [True, True, False, False]


def test_still_linear_descent_has_share_tail():
    e = 1000
    history = 10.0 - 0.01 * np.arange(e)
    share = tail_decrease(history)
    assert share.shape == ()
    assert float(share) == pytest.approx(100 / 999, rel=RTOL)
    assert bool(still_decreasing(history))
    # a 10-epoch run (the Transformer's length) descending linearly: 1 of 9 steps
    assert float(tail_decrease(history[:10])) == pytest.approx(1 / 9, rel=RTOL)
    assert bool(still_decreasing(history[:10]))


def test_plateau_has_share_zero():
    history = np.concatenate([np.linspace(5.0, 1.0, 300), np.ones(700)])
    assert float(tail_decrease(history)) == 0.0
    assert not bool(still_decreasing(history))


def test_noise_on_a_plateau_and_on_a_descent():
    rng = np.random.default_rng(0)
    e, m, sigma = 500, 8, 1e-3
    t = np.arange(e)[:, None]
    noise = sigma * rng.standard_normal((e, m))
    converged = 1.0 + 2.0 * np.exp(-0.05 * t) + noise  # total decrease ≈ 2
    share = tail_decrease(converged)
    # share ≈ (noise_k − noise_last) / 2 (the decay left at k = 449 is 2e-10): SD σ/√2, so
    # 2.5σ is 3.5 SD — exceeded with probability 4e-4 per model
    assert (share.abs() < 2.5 * sigma).all()
    assert not still_decreasing(converged).any()
    descending = 3.0 - 2.0 * t / e + noise  # linear: share ≈ 50/499 ± 2.5σ
    share = tail_decrease(descending)
    assert torch.allclose(share, torch.full((m,), 50 / 499, dtype=torch.float64), atol=2.5 * sigma)
    assert still_decreasing(descending).all()


def test_special_cases():
    e = 20
    decreasing = np.linspace(2.0, 1.0, e)
    bumpy = np.concatenate([np.linspace(1.0, 2.0, 10), np.linspace(2.0, 1.0, 10)])
    tail_up = np.concatenate([np.linspace(2.0, 1.0, 18), [1.1, 1.2]])
    rise_then_fall = np.concatenate([np.linspace(2.0, 3.0, 17), [3.0, 2.0, 1.5]])
    cases = np.stack(
        [
            decreasing,
            np.full(e, 0.7),  # constant: 0
            np.linspace(1.0, 2.0, e),  # increasing: NaN
            bumpy,  # no net decrease, not constant: NaN
            np.where(np.arange(e) == 5, math.nan, decreasing),  # non-finite: NaN
            np.where(np.arange(e) == 5, math.inf, decreasing),
            tail_up,  # negative share
            rise_then_fall,  # share > 1
        ],
        axis=1,
    )
    share = tail_decrease(cases).tolist()
    assert share[0] == pytest.approx(2 / 19, rel=RTOL)
    assert share[1] == 0.0
    assert all(math.isnan(s) for s in share[2:6])
    # k = 19 − ⌈1.9⌉ = 17: (h[17] − h[19]) / (h[0] − h[19])
    assert share[6] == pytest.approx((1.0 - 1.2) / (2.0 - 1.2), rel=RTOL)
    assert share[7] == pytest.approx((3.0 - 1.5) / (2.0 - 1.5), rel=RTOL)
    assert still_decreasing(cases).tolist() == [True, False, False, False] + [False] * 3 + [True]
    with pytest.raises(ValueError, match="2 epochs"):
        tail_decrease([1.0])
    with pytest.raises(ValueError, match="shape"):
        tail_decrease(np.ones((3, 2, 2)))


def test_input_types_agree():
    h = 1.0 + np.exp(-0.01 * np.arange(300))
    ref = tail_decrease(h)
    assert tail_decrease(list(h)) == ref
    assert tail_decrease(torch.from_numpy(h)) == ref
    # float32 histories are promoted before the subtraction
    h32 = torch.from_numpy(h).float()
    assert tail_decrease(h32) == tail_decrease(h32.double())


def test_messages_carry_the_numbers():
    t = np.arange(100)[:, None]
    history = np.hstack([10.0 - 0.01 * t, 1.0 + np.exp(-0.5 * t), 1.0 + 0.01 * t])
    msgs = convergence_messages(history, labels=["cold", "warm", "pbrf"])
    assert msgs[0].startswith("cold: 10.1% of the objective's decrease over 100 epochs")
    assert "last 10 of its 99 epoch-to-epoch steps" in msgs[0]
    assert "above the 5% threshold: still training" in msgs[0]
    assert msgs[1].startswith("warm: 0.0%") and "within the 5% threshold" in msgs[1]
    assert msgs[2].startswith("pbrf: no tail share over 100 epochs")
    assert convergence_messages(history[:, 0])[0].startswith("model 0:")
    with pytest.raises(ValueError, match="labels"):
        convergence_messages(history, labels=["a"])
