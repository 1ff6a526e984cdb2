"""Gap metric (Section 6) and correlations against independent references."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from tiny_problems import tiny_problem

from pbrf.metrics import output_distance, pearson, rankdata, spearman


def test_output_distance_is_mean_l2_over_examples():
    problem, theta, x, _ = tiny_problem("cross_entropy", n=11)
    g = torch.Generator().manual_seed(0)
    a = theta + 0.1 * torch.randn(3, theta.numel(), generator=g, dtype=theta.dtype)
    b = theta + 0.1 * torch.randn(3, theta.numel(), generator=g, dtype=theta.dtype)
    got = output_distance(problem.f, a, b, x, chunk_size=4)
    for m in range(3):
        expected = (problem.f(a[m], x) - problem.f(b[m], x)).norm(dim=1).mean()
        torch.testing.assert_close(got[m], expected)
    # a single θ_b broadcasts against the stack
    torch.testing.assert_close(
        output_distance(problem.f, a, theta, x),
        output_distance(problem.f, a, theta[None].expand(3, -1), x),
    )
    assert output_distance(problem.f, a, a, x).abs().max() == 0


def test_correlations_match_scipy():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20, generator=g, dtype=torch.float64)
    b = 0.5 * a + torch.randn(20, generator=g, dtype=torch.float64)
    b[3] = b[4]  # a tie
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a.numpy(), b.numpy())[0], abs=1e-12)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.numpy(), b.numpy())[0], abs=1e-12)
    torch.testing.assert_close(
        rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])),
        torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64),
    )


def test_correlation_edge_cases():
    assert torch.isnan(torch.tensor(pearson(torch.ones(5), torch.arange(5.0))))
    with pytest.raises(ValueError, match="equal length"):
        pearson(torch.ones(3), torch.ones(4))
