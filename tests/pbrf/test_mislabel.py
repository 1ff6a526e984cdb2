"""Mislabel detection (Figure 6) and two-stage LOO (Table 8) in the library: label corruption,
self-influence against dense float64 solves, detection curves and AUC against brute-force and
rank formulas, the random baseline against SciPy and Monte Carlo, and two-stage LOO against
separately trained runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sst
from tiny_problems import DTYPE, tiny_problem

from pbrf.curvature import dense_gnh
from pbrf.data.corrupt import corrupt_labels
from pbrf.gradients import removal_gradients
from pbrf.mislabel import (
    detection_auc,
    detection_curve,
    found_at,
    own_loss_change,
    random_auc,
    random_found_interval,
    self_influence_scores,
)
from pbrf.responses import NO_REMOVAL, BaseRun, Schedule, retrain
from pbrf.solvers import CGSettings, ExactSettings
from pbrf.study.config import SGD, TrainConfig

DAMPING = 1e-2
DIRECT_RTOL = 1e-9  # float64 direct solves on cond ≲ 1e3 systems: error ≲ 1e-12


# --------------------------------------------------------------------------- corruption


def test_corruption_changes_exactly_the_stated_share_to_other_classes_reproducibly():
    t = torch.arange(1000) % 10
    noisy, mask = corrupt_labels(t, 10, 0.1, seed=3)
    assert int(mask.sum()) == 100
    assert bool((noisy[mask] != t[mask]).all()) and torch.equal(noisy[~mask], t[~mask])
    assert int(noisy.min()) >= 0 and int(noisy.max()) <= 9
    again, mask2 = corrupt_labels(t, 10, 0.1, seed=3)
    assert torch.equal(again, noisy) and torch.equal(mask2, mask)
    other, _ = corrupt_labels(t, 10, 0.1, seed=4)
    assert not torch.equal(other, noisy)


def test_corrupted_labels_are_uniform_over_the_other_classes():
    """Shift (new − old) mod C is uniform on 1..C−1: chi-square against SciPy at α = 1e-3."""
    t = torch.zeros(20000, dtype=torch.long)
    noisy, mask = corrupt_labels(t, 5, 0.5, seed=0)
    counts = np.bincount(noisy[mask].numpy(), minlength=5)
    assert counts[0] == 0
    assert sst.chisquare(counts[1:]).pvalue > 1e-3


def test_binary_targets_are_flipped():
    t = torch.tensor([[0.0], [1.0]] * 50)
    noisy, mask = corrupt_labels(t, 2, 0.2, seed=1)
    assert int(mask.sum()) == 20
    assert torch.equal(noisy[mask], 1.0 - t[mask]) and torch.equal(noisy[~mask], t[~mask])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001])
def test_corruption_refuses_shares_that_corrupt_none_or_all(fraction):
    with pytest.raises(ValueError, match="fraction"):
        corrupt_labels(torch.arange(100) % 3, 3, fraction, seed=0)


# --------------------------------------------------------------------------- self-influence


def _dense_self_influence(problem, theta, x, t, damping):
    """Independent reference: jacrev-built GNH, NumPy solve, ε g_zᵀ(G + λI)⁻¹g_z per row."""
    g = removal_gradients(problem, theta, x[:, None], t[:, None]).numpy()
    a = dense_gnh(problem, theta, x, t).numpy() + damping * np.eye(theta.numel())
    return np.einsum("nd,nd->n", g, np.linalg.solve(a, g.T).T) / x.shape[0]


@pytest.mark.parametrize(
    ("solver", "chunk", "rtol"),
    [
        (ExactSettings(), None, DIRECT_RTOL),
        (ExactSettings(method="dual"), 7, DIRECT_RTOL),
        # CG to a 1e-12 residual: the quadratic form's error is ≲ cond · 1e-12
        (CGSettings(tol=1e-12, max_iter=2000), 10, 1e-8),
    ],
)
def test_self_influence_of_every_example_matches_a_dense_solve(solver, chunk, rtol):
    problem, theta, x, t = tiny_problem(n=24)
    res = self_influence_scores(problem, theta, x, t, damping=DAMPING, solver=solver, chunk=chunk)
    expected = _dense_self_influence(problem, theta, x, t, DAMPING)
    assert res.converged and res.scores.shape == (24,)
    np.testing.assert_allclose(res.scores.numpy(), expected, rtol=rtol)


def test_own_loss_change_evaluates_each_model_on_its_own_example():
    problem, theta, x, t = tiny_problem(n=6)
    g = torch.Generator().manual_seed(1)
    delta = 1e-2 * torch.randn(3, theta.numel(), generator=g, dtype=DTYPE)
    rows = torch.tensor([4, 0, 2])
    before, after = own_loss_change(problem, theta, delta, x[rows], t[rows])
    for m, z in enumerate(rows.tolist()):  # eager, one model and one example at a time
        ref_b = problem.example_losses(theta, x[z : z + 1], t[z : z + 1]).sum()
        ref_a = problem.example_losses(theta + delta[m], x[z : z + 1], t[z : z + 1]).sum()
        assert float(before[m]) == pytest.approx(float(ref_b), rel=1e-12)
        assert float(after[m]) == pytest.approx(float(ref_a), rel=1e-12)


# --------------------------------------------------------------------------- detection


def _random_case(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, generator=g, dtype=torch.float64)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=g)[:c]] = True
    return scores, mask


def test_detection_curve_and_auc_match_a_brute_force_sort_and_the_rank_formula():
    scores, mask = _random_case(97, 11, seed=0)
    scores[5] = scores[6]  # a tie: stable order keeps index 5 first
    found = detection_curve(scores, mask)
    order = sorted(range(97), key=lambda i: (-float(scores[i]), i))
    hits = np.cumsum([bool(mask[i]) for i in order]) / 11
    np.testing.assert_allclose(found[1:].numpy(), hits, rtol=0, atol=1e-15)
    assert float(found[0]) == 0.0 and float(found[-1]) == 1.0
    # AUC = (1/(N·C)) Σ_j (N + 1 − pos_j), pos_j the 1-based inspection position of corrupted j
    pos = [order.index(i) + 1 for i in range(97) if mask[i]]
    assert detection_auc(found) == pytest.approx(sum(98 - p for p in pos) / (97 * 11), rel=1e-12)
    k, share = found_at(found, 0.2)
    assert k == round(0.2 * 97) and share == pytest.approx(float(hits[k - 1]))


def test_a_perfect_ranking_finds_everything_after_inspecting_the_corrupted_share():
    mask = torch.zeros(50, dtype=torch.bool)
    mask[[3, 17, 40, 41, 49]] = True
    found = detection_curve(mask.double(), mask)
    assert found_at(found, 0.1) == (5, 1.0)
    assert detection_auc(found) == pytest.approx(1 - (5 - 1) / (2 * 50), rel=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # SciPy moments at k = N
def test_random_order_interval_is_the_exact_hypergeometric_one():
    for n, c, k in ((1437, 144, 287), (100, 10, 20), (60, 7, 60), (60, 7, 0)):
        mean, lo, hi = random_found_interval(n, c, k)
        dist = sst.hypergeom(n, c, k)
        assert mean == pytest.approx(dist.mean() / c, rel=1e-12)
        assert lo * c == dist.ppf(0.025) and hi * c == dist.ppf(0.975)


def test_random_order_auc_mean_and_spread_match_monte_carlo():
    """4000 random permutations: the closed-form mean and sd agree within 4 Monte-Carlo standard
    errors (sd/√R for the mean, sd·√(2/(R−1)) for the sd)."""
    n, c, reps = 60, 7, 4000
    _, mask = _random_case(n, c, seed=1)
    g = torch.Generator().manual_seed(2)
    aucs = np.array(
        [detection_auc(detection_curve(torch.rand(n, generator=g), mask)) for _ in range(reps)]
    )
    mean, sd = random_auc(n, c)
    assert mean == pytest.approx((n + 1) / (2 * n), rel=1e-15)
    assert abs(aucs.mean() - mean) < 4 * sd / math.sqrt(reps)
    assert abs(aucs.std(ddof=1) - sd) < 4 * sd * math.sqrt(2 / (reps - 1))


# --------------------------------------------------------------------------- two-stage LOO


def test_two_stage_is_the_removal_run_minus_the_full_data_run_on_the_same_batches():
    """Reference: two separately trained warm starts from θˢ — the M removals, and one run whose
    removal row matches no example — differenced in float64 (same arithmetic, so ≈ exact)."""
    problem, theta, x, t = tiny_problem(n=24)
    base = BaseRun(theta, theta, torch.empty(0, 0, dtype=torch.long), torch.empty(0))
    train = TrainConfig(optimizer=SGD(lr=0.2), epochs=4, batch_size=8)
    removed = torch.tensor([[3], [10], [21]])
    kw = {"train": train, "damping": 0.0, "schedule": Schedule(3, 1.0)}
    two = retrain("two_stage", problem, base, x, t, removed, **kw)
    warm = retrain("warm", problem, base, x, t, removed, **kw)
    full = retrain("warm", problem, base, x, t, torch.tensor([[NO_REMOVAL]]), **kw)
    expected = warm.delta - full.delta
    assert two.delta.shape == (3, theta.numel()) and two.epoch_loss.shape[1] == 3
    torch.testing.assert_close(two.delta, expected, rtol=1e-10, atol=1e-14)
    # removing z changes the run: the two-stage response is not zero, and not the warm one
    assert float(two.delta.norm()) > 0 and float((two.delta - warm.delta).norm()) > 0
