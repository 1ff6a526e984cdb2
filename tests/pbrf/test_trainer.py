"""The vectorized trainer: M stacked models = M separate runs; masking = physical deletion;
each retraining variant against an eager PyTorch loop; responses kept above rounding."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_problems import DTYPE, tiny_problem

from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.objectives import Batch, pbrf_objective
from pbrf.params import flat_params, load_flat_
from pbrf.problem import Problem
from pbrf.responses import (
    BaseRun,
    Schedule,
    matched_epochs,
    retrain,
    sgd_horizon,
    total_epochs,
    train_base,
    variant_objective,
)
from pbrf.schedule import batches_of, epoch_order, epoch_orders
from pbrf.study.config import StudyConfig, TrainConfig
from pbrf.study.schedules import schedule_horizon, variant_schedule
from pbrf.trainer import NonFiniteLossError, SGDSettings, train_stacked

RTOL = 1e-9  # float64; stacked and single runs differ only in summation order inside GEMMs
ATOL = 1e-12
EAGER_RTOL = 1e-10  # float64, same operations in another order (δ-form vs θ-form updates)
N = 30


@pytest.fixture(scope="module")
def setup():
    problem, theta, x, t = tiny_problem("cross_entropy", n=N, weight_decay=0.01)
    return problem, theta, x, t


def _sgd(lr: float = 0.1, epochs: int = 4, batch_size: int | None = 8, **opt) -> TrainConfig:
    return TrainConfig(
        optimizer={"name": "sgd", "lr": lr, **opt}, epochs=epochs, batch_size=batch_size
    )


def _lbfgs(epochs: int = 60) -> TrainConfig:
    return TrainConfig(optimizer={"name": "lbfgs"}, epochs=epochs, batch_size=None)


def _eager_model(theta: torch.Tensor) -> torch.nn.Module:
    model = build_model(
        "mlp", input_shape=(5,), output_dim=3, seed=0, width=6, depth=1, activation="tanh"
    ).to(DTYPE)
    return load_flat_(model, theta)


def _zeros(m: int, theta: torch.Tensor) -> torch.Tensor:
    return torch.zeros(m, theta.numel(), dtype=theta.dtype)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("variant", ["warm", "pbrf", "linearized_pbrf"])
def test_stacked_models_equal_separate_runs(setup, optimizer, variant):
    problem, theta, x, t = setup
    removed = torch.tensor([[0], [7], [29]])
    objective, mask, prepare = variant_objective(variant, problem, theta, 1.0 / N, 0.01)
    orders = list(epoch_orders(N, 0, range(3)))
    settings = SGDSettings(optimizer=optimizer, lr=0.05, batch_size=8)
    kw = dict(removed=removed, epsilon=1.0 / N, mask_removed=mask, prepare=prepare)
    stacked = train_stacked(objective, _zeros(3, theta), x, t, orders, settings, **kw).theta
    for m in range(3):
        kw["removed"] = removed[m : m + 1]
        single = train_stacked(objective, _zeros(1, theta), x, t, orders, settings, **kw).theta[0]
        torch.testing.assert_close(stacked[m], single, rtol=RTOL, atol=ATOL)
    # and the removals actually differ
    assert (stacked[0] - stacked[1]).abs().max() > 1e-6


def test_stacked_lbfgs_equals_separate_runs(setup):
    """Batched L-BFGS (own pairs and line search per model) = one model at a time."""
    problem, theta, x, t = setup
    base = BaseRun(theta, theta, torch.empty(0, N, dtype=torch.long), torch.empty(0))
    removed = torch.tensor([[1], [2], [3]])
    kw = dict(train=_lbfgs(500), damping=0.01, schedule=Schedule(500, 1.0))
    stacked = retrain("proximal", problem, base, x, t, removed, **kw)
    assert stacked.converged is not None and bool(stacked.converged.all())
    for m in range(3):
        single = retrain("proximal", problem, base, x, t, removed[m : m + 1], **kw).delta[0]
        torch.testing.assert_close(stacked.delta[m], single, rtol=1e-7, atol=1e-9)


def test_masked_run_equals_training_on_physically_deleted_data(setup):
    """The removal definition of :mod:`pbrf.objectives`, checked against a plain eager loop.

    Reference: delete example z from the data set, keep the batch order (minus z), and for each
    batch divide the summed regularized loss by the batch's original size; torch.optim.SGD.
    """
    problem, theta, x, t = setup
    z, batch_size, lr = 11, 8, 0.1
    orders = list(epoch_orders(N, 3, range(4)))
    objective, _, _ = variant_objective("warm", problem, theta, 1.0 / N, 0.0)
    delta = train_stacked(
        objective,
        _zeros(1, theta),
        x,
        t,
        orders,
        SGDSettings(lr=lr, batch_size=batch_size),
        removed=torch.tensor([[z]]),
        epsilon=1.0 / N,
    ).theta[0]
    model = _eager_model(theta)
    _eager_deleted(model, x, t, orders, z, batch_size, lr)
    torch.testing.assert_close(theta + delta, flat_params(model), rtol=EAGER_RTOL, atol=1e-12)


def _eager_deleted(model, x, t, orders, z, batch_size, lr, extra=None, milestones=(), gamma=1.0):
    """torch.optim.SGD on the data with example ``z`` deleted (``extra(θ)`` added per batch)."""
    keep = torch.arange(N) != z
    x_del, t_del = x[keep], t[keep]
    new_index = torch.cumsum(keep.long(), 0) - 1  # old index -> index in the deleted data set
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma)
    loss = get_loss("cross_entropy")
    for order in orders:
        for idx in batches_of(order, batch_size):
            rows = new_index[idx[idx != z]]
            opt.zero_grad()
            reg = 0.5 * 0.01 * sum((p * p).sum() for p in model.parameters())
            total = (loss(model(x_del[rows]), t_del[rows]) + reg).sum() / idx.numel()
            if extra is not None:
                total = total + extra(torch.cat([p.reshape(-1) for p in model.parameters()]))
            total.backward()
            opt.step()
        sched.step()


def test_cold_retrain_replays_base_order_then_continues(setup):
    """``retrain("cold")`` = from θ⁰, the base run's K epochs then K/2 more, z deleted."""
    problem, theta0, x, t = setup
    train = _sgd(lr=0.1, epochs=4, batch_size=8)
    base = train_base(problem, theta0, x, t, train)
    z = 5
    res = retrain(
        "cold",
        problem,
        base,
        x,
        t,
        torch.tensor([[z]]),
        train=train,
        damping=0.01,
        schedule=Schedule(2, 1.0),
    )
    assert res.epoch_loss.shape == (6, 1)
    model = _eager_model(theta0)
    orders = [*base.orders, *epoch_orders(N, 0, range(4, 6))]
    _eager_deleted(model, x, t, orders, z, 8, 0.1)
    # the response is stored relative to θˢ
    torch.testing.assert_close(
        base.theta_s + res.delta[0], flat_params(model), rtol=EAGER_RTOL, atol=1e-12
    )


def test_proximal_retrain_against_eager_loop(setup):
    """Eq. 7: warm start plus (λ/2)‖θ − θˢ‖², against an eager loop with that term written out."""
    problem, theta0, x, t = setup
    train = _sgd(lr=0.1, epochs=4, batch_size=8)
    base = train_base(problem, theta0, x, t, train)
    z, lam = 9, 0.3
    res = retrain(
        "proximal",
        problem,
        base,
        x,
        t,
        torch.tensor([[z]]),
        train=train,
        damping=lam,
        schedule=Schedule(3, 1.0),
    )
    model = _eager_model(base.theta_s)
    anchor = base.theta_s.clone()
    orders = list(epoch_orders(N, 0, range(4, 7)))
    _eager_deleted(
        model, x, t, orders, z, 8, 0.1, extra=lambda th: 0.5 * lam * ((th - anchor) ** 2).sum()
    )
    torch.testing.assert_close(
        base.theta_s + res.delta[0], flat_params(model), rtol=EAGER_RTOL, atol=1e-12
    )
    # the proximal term matters at this λ: it is not just the warm-start run
    warm = retrain(
        "warm",
        problem,
        base,
        x,
        t,
        torch.tensor([[z]]),
        train=train,
        damping=lam,
        schedule=Schedule(3, 1.0),
    )
    assert (warm.delta - res.delta).norm() > 1e-3 * res.delta.norm()


def test_learning_rate_schedule_matches_multistep_lr(setup):
    """Step decay at milestones (the CIFAR rows) follows torch's MultiStepLR per epoch."""
    problem, theta, x, t = setup
    orders = list(epoch_orders(N, 1, range(6)))
    objective, _, _ = variant_objective("warm", problem, theta, 1.0 / N, 0.0)
    settings = SGDSettings(lr=0.2, batch_size=8, lr_milestones=(2, 4), lr_gamma=0.2)
    delta = train_stacked(
        objective,
        _zeros(1, theta),
        x,
        t,
        orders,
        settings,
        removed=torch.tensor([[3]]),
        epsilon=1.0 / N,
    ).theta[0]
    model = _eager_model(theta)
    _eager_deleted(model, x, t, orders, 3, 8, 0.2, milestones=(2, 4), gamma=0.2)
    torch.testing.assert_close(theta + delta, flat_params(model), rtol=EAGER_RTOL, atol=1e-12)
    # without the decay the result differs: the schedule is exercised
    plain = train_stacked(
        objective,
        _zeros(1, theta),
        x,
        t,
        orders,
        SGDSettings(lr=0.2, batch_size=8),
        removed=torch.tensor([[3]]),
        epsilon=1.0 / N,
    ).theta[0]
    assert (plain - delta).norm() > 1e-3 * delta.norm()


def test_cold_start_replays_the_base_batch_order(setup):
    """With ε = 0 the cold run's first K epochs reproduce θˢ exactly."""
    problem, theta0, x, t = setup
    train = TrainConfig(optimizer={"name": "sgd", "lr": 0.1}, epochs=5, batch_size=8, seed=4)
    base = train_base(problem, theta0, x, t, train)
    assert base.orders.shape == (5, N)
    torch.testing.assert_close(base.orders[2], epoch_order(N, 4, 2))
    objective, _, _ = variant_objective("cold", problem, theta0, 0.0, 0.0)
    replay = train_stacked(
        objective,
        _zeros(2, theta0),
        x,
        t,
        list(base.orders),
        SGDSettings(lr=0.1, batch_size=8),
        removed=torch.tensor([[0], [1]]),
        epsilon=0.0,
    ).theta
    torch.testing.assert_close(
        theta0 + replay, base.theta_s[None].expand(2, -1), rtol=RTOL, atol=ATOL
    )


def test_all_variants_run_and_start_where_table1_says(setup):
    problem, theta0, x, t = setup
    train = _sgd(lr=0.1, epochs=4, batch_size=8)
    base = train_base(problem, theta0, x, t, train)
    removed = torch.tensor([[0, 1], [2, 3]])  # groups of two
    schedule = Schedule(2, 1.0)
    for variant in ("cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper"):
        res = retrain(
            variant, problem, base, x, t, removed, train=train, damping=0.01, schedule=schedule
        )
        assert res.delta.shape == (2, theta0.numel())
        assert torch.isfinite(res.delta).all()
        expected_epochs = 4 + 2 if variant == "cold" else 2
        assert res.epoch_loss.shape == (expected_epochs, 2)
        assert total_epochs(train, schedule, variant) == expected_epochs


def test_displacement_keeps_responses_that_theta_storage_rounds_away():
    """Training δ = θ − θˢ in float32 recovers a tiny PBRF response that training θ loses.

    Reference: the same PBRF run in float64. With ε = 1/N = 1e-4 the per-step updates are far
    below half an ulp of θˢ for most coordinates, so float32 θ-storage stalls while the
    displacement accumulates them.
    """
    problem64, theta64, x64, t64 = tiny_problem("cross_entropy", n=40, weight_decay=0.0)
    eps, lam, lr, steps = 1e-4, 1e-3, 0.05, 200
    removed = torch.tensor([[3]])
    orders = [torch.arange(40)] * steps

    def run(problem, theta, x, t, displacement: bool):
        if displacement:
            obj, _, prep = variant_objective("pbrf", problem, theta, eps, lam)
            start = _zeros(1, theta)
        else:  # the θ-form: the trained variable is θ itself, stored in the run's dtype

            def obj(th, b, w, rx, rt):
                return pbrf_objective(problem, th - theta, b, rx, rt, theta, eps, lam)

            def prep(batch: Batch) -> Batch:
                return batch._replace(anchor_outputs=problem.f(theta, batch.x))

            start = theta[None].clone()
        out = train_stacked(
            obj,
            start,
            x,
            t,
            orders,
            SGDSettings(lr=lr, batch_size=None),
            removed=removed,
            epsilon=eps,
            mask_removed=False,
            prepare=prep,
        ).theta[0]
        return out.double() if displacement else out.double() - theta.double()

    ref = run(problem64, theta64, x64, t64, True)
    problem32 = Problem.from_module(
        _eager_model(theta64).float(), problem64.loss, problem64.weight_decay
    )
    theta32, x32 = theta64.float(), x64.float()
    disp = run(problem32, theta32, x32, t64, True)
    naive = run(problem32, theta32, x32, t64, False)
    err_disp = float((disp - ref).norm() / ref.norm())
    err_naive = float((naive - ref).norm() / ref.norm())
    assert err_disp < 1e-2, err_disp  # float32 forward passes: ~1e-3 relative noise
    assert err_naive > 10 * err_disp, (err_naive, err_disp)


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
            _zeros(1, theta),
            x,
            t,
            orders,
            SGDSettings(optimizer=kind, lr=0.05, batch_size=10),
            removed=torch.empty(1, 0, dtype=torch.long),
            epsilon=0.0,
        ).theta[0]
        model = _eager_model(theta)
        opt = make(list(model.parameters()))
        ref = Problem.from_module(copy.deepcopy(model), problem.loss, problem.weight_decay)
        for order in orders:
            for idx in batches_of(order, 10):
                opt.zero_grad()
                theta_now = torch.cat([p.reshape(-1) for p in model.parameters()])
                ref.cost(theta_now, x[idx], t[idx]).backward()
                opt.step()
        torch.testing.assert_close(theta + ours, flat_params(model), rtol=1e-9, atol=1e-11)


def test_nan_loss_names_the_models_and_the_learning_rate(setup):
    problem, theta, x, t = setup
    objective, _, _ = variant_objective("warm", problem, theta, 0.0, 0.0)
    with pytest.raises(
        NonFiniteLossError, match=r"retraining \(warm\).*model\(s\) \[0, 1\].*1e\+30"
    ) as info:
        train_stacked(
            objective,
            _zeros(2, theta),
            x,
            t,
            list(epoch_orders(N, 0, range(3))),
            SGDSettings(lr=1e30, batch_size=8),
            removed=torch.tensor([[0], [1]]),
            epsilon=1.0 / N,
            label="retraining (warm)",
        )
    assert info.value.models == [0, 1] and info.value.lr == 1e30


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
            train=_lbfgs(5),
            damping=0.01,
            schedule=Schedule(5, 1.0),
        )


def test_horizons_and_schedules_follow_the_config():
    """η·S/(1−μ) of each variant's schedule; a matched PBRF hits LiSSA's T/σ to within an epoch."""
    assert sgd_horizon(0.1, 3600) == pytest.approx(360.0)
    assert sgd_horizon(0.1, 100, momentum=0.9) == pytest.approx(100.0)
    # 1437 examples at batch 128: 12 steps per epoch
    cfg = StudyConfig.model_validate(
        {"train": {"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 100, "batch_size": 128}}
    )
    paper = variant_schedule(cfg, "pbrf_paper", 1437)
    assert (paper.epochs, paper.lr_factor) == (50, 0.1)
    assert schedule_horizon(cfg, paper, 1437) == pytest.approx(0.01 * 50 * 12)
    assert variant_schedule(cfg, "warm", 1437) == Schedule(50, 1.0)
    matched = variant_schedule(cfg, "pbrf", 1437, lissa_horizon=351.0)
    h = schedule_horizon(cfg, matched, 1437)
    assert abs(h - 351.0) <= 0.5 * 0.1 * 12  # within half an epoch of steps
    with pytest.raises(ValueError, match="needs LiSSA's horizon"):
        variant_schedule(cfg, "pbrf", 1437)
    explicit = cfg.model_copy(
        update={
            "retrain": cfg.retrain.model_copy(
                update={
                    "pbrf": cfg.retrain.pbrf.model_copy(
                        update={"horizon": "explicit", "epochs": 300}
                    )
                }
            )
        }
    )
    assert variant_schedule(explicit, "linearized_pbrf", 1437) == Schedule(300, 1.0)
    assert matched_epochs(100.0, 0.1, 10, momentum=0.9) == 10
    adam = StudyConfig.model_validate(
        {"train": {"optimizer": "adam"}, "retrain": {"pbrf": {"horizon": "explicit"}}}
    )
    assert schedule_horizon(adam, Schedule(5, 1.0), 100) is None


def test_monitored_objective_is_exact_at_the_start_and_shows_whether_training_settled(setup):
    """The fixed-pass objective at δ = 0 is −ε Σ ℓ_z(θˢ) for the PBRF (Bregman and proximal
    terms vanish); a long, well-damped run settles, a short one is still falling."""
    from pbrf.convergence import still_decreasing

    problem, theta0, x, t = setup
    train = _sgd(lr=0.2, epochs=2, batch_size=None)
    base = BaseRun(theta0, theta0, torch.empty(0, N, dtype=torch.long), torch.empty(0))
    removed = torch.tensor([[4], [8]])

    def run(epochs: int):
        return retrain(
            "pbrf",
            problem,
            base,
            x,
            t,
            removed,
            train=train,
            damping=0.5,
            schedule=Schedule(epochs, 1.0),
        )

    short, long = run(5), run(400)
    z_loss = problem.example_losses(theta0, x[removed[:, 0]], t[removed[:, 0]])
    torch.testing.assert_close(short.checkpoints[0], -z_loss / N, rtol=1e-12, atol=1e-15)
    assert short.checkpoint_epochs == (0, 4, 5) and long.checkpoint_epochs == (0, 360, 400)
    assert bool(still_decreasing(short.checkpoints).all())
    assert not bool(still_decreasing(long.checkpoints).any())
