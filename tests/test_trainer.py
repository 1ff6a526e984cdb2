"""The vectorized trainer: M stacked models = M separate runs; masking = physical deletion."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem

from pbrf.config import RetrainConfig, TrainConfig
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.params import flat_params, load_flat_
from pbrf.problem import Problem
from pbrf.responses import (
    BaseRun,
    pbrf_horizon,
    pbrf_steps,
    retrain,
    total_epochs,
    train_base,
    variant_objective,
)
from pbrf.schedule import batches_of, epoch_order, epoch_orders
from pbrf.trainer import NonFiniteLossError, SGDSettings, train_stacked

RTOL = 1e-9  # float64; stacked and single runs differ only in summation order inside GEMMs
ATOL = 1e-12
N = 30


@pytest.fixture(scope="module")
def setup():
    problem, theta, x, t = tiny_problem("cross_entropy", n=N, weight_decay=0.01)
    return problem, theta, x, t


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("variant", ["warm", "pbrf", "linearized_pbrf"])
def test_stacked_models_equal_separate_runs(setup, optimizer, variant):
    problem, theta, x, t = setup
    removed = torch.tensor([[0], [7], [29]])
    objective, mask, prepare = variant_objective(variant, problem, theta, 1.0 / N, 0.01)
    orders = list(epoch_orders(N, 0, range(3)))
    settings = SGDSettings(optimizer=optimizer, lr=0.05, batch_size=8)
    kw = dict(removed=removed, epsilon=1.0 / N, mask_removed=mask, prepare=prepare)
    stacked = train_stacked(
        objective, theta[None].expand(3, -1), x, t, orders, settings, **kw
    ).theta
    for m in range(3):
        kw["removed"] = removed[m : m + 1]
        single = train_stacked(objective, theta[None], x, t, orders, settings, **kw).theta[0]
        torch.testing.assert_close(stacked[m], single, rtol=RTOL, atol=ATOL)
    # and the removals actually differ
    assert (stacked[0] - stacked[1]).abs().max() > 1e-6


def test_stacked_lbfgs_equals_separate_runs(setup):
    problem, theta, x, t = setup
    base = BaseRun(theta, theta, torch.empty(0, N, dtype=torch.long), torch.empty(0))
    train = TrainConfig(optimizer="lbfgs", epochs=60)
    removed = torch.tensor([[1], [2], [3]])
    kw = dict(train=train, retrain=RetrainConfig(num_removals=3), damping=0.01)
    stacked = retrain("proximal", problem, base, x, t, removed, **kw).theta
    for m in range(3):
        single = retrain("proximal", problem, base, x, t, removed[m : m + 1], **kw).theta[0]
        torch.testing.assert_close(stacked[m], single, rtol=1e-7, atol=1e-9)


def test_masked_run_equals_training_on_physically_deleted_data(setup):
    """The removal definition of :mod:`pbrf.objectives`, checked against a plain eager loop.

    Reference: delete example z from the data set, keep the batch order (minus z), and for each
    batch divide the summed regularized loss by the batch's original size; torch.optim.SGD.
    """
    problem, theta, x, t = setup
    z, batch_size, lr = 11, 8, 0.1
    orders = list(epoch_orders(N, 3, range(4)))
    objective, _, _ = variant_objective("warm", problem, theta, 1.0 / N, 0.0)
    masked = train_stacked(
        objective,
        theta[None],
        x,
        t,
        orders,
        SGDSettings(lr=lr, batch_size=batch_size),
        removed=torch.tensor([[z]]),
        epsilon=1.0 / N,
    ).theta[0]

    keep = torch.arange(N) != z
    x_del, t_del = x[keep], t[keep]
    new_index = torch.cumsum(keep.long(), 0) - 1  # old index -> index in the deleted data set
    model = build_model(
        "mlp", input_shape=(5,), output_dim=3, seed=0, width=6, depth=1, activation="tanh"
    ).to(DTYPE)
    load_flat_(model, theta)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = get_loss("cross_entropy")
    for order in orders:
        for idx in batches_of(order, batch_size):
            rows = new_index[idx[idx != z]]
            opt.zero_grad()
            reg = 0.5 * 0.01 * sum((p * p).sum() for p in model.parameters())
            total = (loss(model(x_del[rows]), t_del[rows]) + reg).sum() / idx.numel()
            total.backward()
            opt.step()
    torch.testing.assert_close(masked, flat_params(model), rtol=1e-10, atol=1e-12)


def test_cold_start_replays_the_base_batch_order(setup):
    """With ε = 0 the cold run's first K epochs reproduce θˢ exactly."""
    problem, theta0, x, t = setup
    train = TrainConfig(lr=0.1, epochs=5, batch_size=8, seed=4)
    base = train_base(problem, theta0, x, t, train)
    assert base.orders.shape == (5, N)
    torch.testing.assert_close(base.orders[2], epoch_order(N, 4, 2))
    objective, _, _ = variant_objective("cold", problem, base.theta_s, 0.0, 0.0)
    replay = train_stacked(
        objective,
        theta0[None].expand(2, -1),
        x,
        t,
        list(base.orders),
        SGDSettings(lr=0.1, batch_size=8),
        removed=torch.tensor([[0], [1]]),
        epsilon=0.0,
    ).theta
    torch.testing.assert_close(replay, base.theta_s[None].expand(2, -1), rtol=RTOL, atol=ATOL)


def test_all_variants_run_and_start_where_table1_says(setup):
    problem, theta0, x, t = setup
    train = TrainConfig(lr=0.1, epochs=4, batch_size=8)
    base = train_base(problem, theta0, x, t, train)
    removed = torch.tensor([[0, 1], [2, 3]])  # groups of two
    cfg = RetrainConfig(num_removals=2, group_size=2)
    for variant in ("cold", "warm", "proximal", "pbrf", "linearized_pbrf"):
        res = retrain(variant, problem, base, x, t, removed, train=train, retrain=cfg, damping=0.01)
        assert res.theta.shape == (2, theta0.numel())
        assert torch.isfinite(res.theta).all()
        expected_epochs = 4 + 2 if variant == "cold" else 2
        assert res.epoch_loss.shape == (expected_epochs, 2)
        assert total_epochs(train, cfg, variant) == expected_epochs


def test_first_order_optimizers_match_torch_optim(setup):
    """The functional optimizers follow torch.optim's update rules."""
    problem, theta, x, t = setup
    objective, _, _ = variant_objective("warm", problem, theta, 0.0, 0.0)
    orders = list(epoch_orders(N, 0, range(2)))
    for kind, make in [
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.05)),
        ("momentum", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
        ("adam", lambda ps: torch.optim.Adam(ps, lr=0.05)),
    ]:
        ours = train_stacked(
            objective,
            theta[None],
            x,
            t,
            orders,
            SGDSettings(optimizer=kind, lr=0.05, batch_size=10),
            removed=torch.empty(1, 0, dtype=torch.long),
            epsilon=0.0,
        ).theta[0]
        model = build_model(
            "mlp", input_shape=(5,), output_dim=3, seed=0, width=6, depth=1, activation="tanh"
        ).to(DTYPE)
        load_flat_(model, theta)
        opt = make(list(model.parameters()))
        ref = Problem.from_module(copy.deepcopy(model), problem.loss, problem.weight_decay)
        for order in orders:
            for idx in batches_of(order, 10):
                opt.zero_grad()
                theta_now = torch.cat([p.reshape(-1) for p in model.parameters()])
                ref.cost(theta_now, x[idx], t[idx]).backward()
                opt.step()
        torch.testing.assert_close(ours, flat_params(model), rtol=1e-9, atol=1e-11)


def test_nan_loss_names_the_models_and_what_to_change(setup):
    problem, theta, x, t = setup
    objective, _, _ = variant_objective("warm", problem, theta, 0.0, 0.0)
    with pytest.raises(
        NonFiniteLossError,
        match=r"retraining \(warm\).*non-finite.*model\(s\) \[0, 1\].*Lower the learning rate",
    ):
        train_stacked(
            objective,
            theta[None].expand(2, -1),
            x,
            t,
            list(epoch_orders(N, 0, range(3))),
            SGDSettings(lr=1e30, batch_size=8),
            removed=torch.tensor([[0], [1]]),
            epsilon=1.0 / N,
            label="retraining (warm)",
        )


def test_unknown_variant_and_optimizer():
    problem, theta, _, _ = tiny_problem()
    with pytest.raises(ValueError, match="unknown variant 'hot'"):
        variant_objective("hot", problem, theta, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        from pbrf.optim import FirstOrderOptimizer

        FirstOrderOptimizer("rmsprop")


def test_lbfgs_nan_names_what_to_check(setup):
    problem, theta, x, t = setup
    x = x.clone()
    x[3, 0] = float("nan")
    base = BaseRun(theta, theta, torch.empty(0, N, dtype=torch.long), torch.empty(0))
    with pytest.raises(
        NonFiniteLossError, match=r"retraining \(warm\).*L-BFGS has no learning rate"
    ):
        retrain(
            "warm",
            problem,
            base,
            x,
            t,
            torch.tensor([[0]]),
            train=TrainConfig(optimizer="lbfgs", epochs=5),
            retrain=RetrainConfig(num_removals=1),
            damping=0.01,
        )


def test_pbrf_horizon_is_learning_rate_times_steps():
    train = TrainConfig(lr=0.1, epochs=100, batch_size=128)
    cfg = RetrainConfig(pbrf_lr_factor=1.0, pbrf_epochs=300)
    assert pbrf_steps(train, cfg, 1437) == 300 * 12
    assert pbrf_horizon(train, cfg, 1437) == pytest.approx(360.0)
    # default: K/2 epochs at lr/10 (Appendix E.3)
    assert pbrf_horizon(train, RetrainConfig(), 1437) == pytest.approx(0.01 * 50 * 12)
    momentum = TrainConfig(optimizer="momentum", momentum=0.9, lr=0.1, epochs=10, batch_size=None)
    assert pbrf_horizon(momentum, cfg, 100) == pytest.approx(0.1 * 300 / 0.1)
    assert pbrf_horizon(TrainConfig(optimizer="adam"), cfg, 100) is None
