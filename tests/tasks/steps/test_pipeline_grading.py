"""The grading study on a smoke run: estimator nodes, TracIn checkpoints and the grading table,
each checked against an independent computation.

References: a dense float64 GNH solve with NumPy (the exact node), ε ∇L_testᵀ g_z by eager
autograd (grad_dot), a plain ``torch.optim.SGD`` replay of base training (TracIn's checkpoints
and factors), the library estimators called directly on inputs the test assembles itself from
the stored artifacts (every node's plumbing: θˢ, removals, test points, damping, module), and
``scipy.stats`` (the correlations).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pipeline_fixtures import run_study, smoke_config, states
from scipy import stats as sst

from pbrf.curvature import dense_gnh
from pbrf.estimators import EstimatorInputs, get_estimator
from pbrf.losses import get_loss
from pbrf.models import build_from_options
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.schedule import batches_of
from tasks import schemas
from tasks.engine import artifacts
from tasks.engine.plan import build_plan

GRADED = ["exact", "cg", "lissa", "kfac", "tracin", "grad_dot", "grad_cos"]
# 6 removals, 4 epochs of 4 batches with the learning rate halved at epoch 3, 2 checkpoints
OVERRIDES = {
    "select__num_removals": 6,
    "train__batch_size": 32,
    "train__epochs": 4,
    "train__checkpoints": 2,
    "train__optimizer__lr_milestones": [3],
    "train__optimizer__lr_gamma": 0.5,
    "retrain__variants": ["cold", "pbrf", "linearized_pbrf", "pbrf_paper"],
    # lissa as the study's influence solver (the smoke scale's depth), the rest at defaults
    "grade__estimators": {n: {"depth": 20} if n == "lissa" else {} for n in GRADED},
}
DENSE_RTOL = 1e-8  # float64 dual solve vs float64 dense solve; κ(G + λI) ≲ 1e4 here
F32_RTOL = 2e-4  # a float32 node vs a float64 reference: sums of ~10³ float32 products
SAME_RTOL = 1e-5  # the same float32 computation, possibly with another reduction order
EAGER_RTOL = 1e-5  # float32 SGD replayed eagerly: 16 steps of rounding


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("grading") / "run"
    cfg = smoke_config(**OVERRIDES)
    assert set(states(run_study(root, cfg)).values()) == {"Completed"}
    return root, cfg


def _read(root: Path, rel: str, schema, step: str) -> pd.DataFrame:
    return artifacts.read_table(root / rel, schema, step=step, stamp=None)


def _estimate(root: Path, name: str) -> pd.DataFrame:
    df = _read(root, f"estimate/{name}/removals.parquet", schemas.ESTIMATE_REMOVALS, "estimate")
    return df.sort_values("removal_id")


def _predicted(root: Path, name: str) -> np.ndarray:
    return _estimate(root, name)["predicted_test_loss_change"].to_numpy()


def _inputs(root: Path, cfg, dtype: torch.dtype, **extra) -> tuple[EstimatorInputs, dict]:
    """Estimator inputs assembled from the run's artifacts, without the pipeline's helpers."""
    data = artifacts.load_checkpoint(root / "prepare/dataset.pt", step="prepare", stamp=None)
    sd = data.state_dict
    x, t = sd["x_train"].to(dtype), sd["t_train"]
    module = build_from_options(cfg.model, input_shape=tuple(x.shape[1:]), output_dim=10)
    theta = artifacts.load_checkpoint(root / "base/theta_s.pt", step="train_base", stamp=None)
    module.load_state_dict(theta.state_dict)
    module = module.to(dtype)
    problem = Problem.from_module(module, get_loss("cross_entropy"))
    rem = _read(root, "select/removed.parquet", schemas.REMOVED, "select")
    rem = rem.sort_values(["removal_id", "position"])
    removed = torch.tensor(rem["train_index"].tolist()).view(int(rem["removal_id"].max()) + 1, -1)
    tp = _read(root, "select/test_points.parquet", schemas.TEST_POINTS, "select")
    test = torch.tensor(tp.sort_values("position")["test_index"].tolist())
    inputs = EstimatorInputs(
        problem=problem,
        theta=flat_params(module),
        x_train=x,
        t_train=t,
        removed=removed,
        x_test=sd["x_test"].to(dtype)[test],
        t_test=sd["t_test"][test],
        damping=cfg.damping,
        module=module,
        **extra,
    )
    return inputs, {"module": module, "sd": sd}


def test_the_default_study_has_no_grading_nodes_and_grading_adds_one_per_estimator():
    plain = build_plan(smoke_config().model_dump(mode="json"))
    assert not plain.of_step("estimate") and not plain.of_step("grade")
    assert "grade" not in plain["report"].upstream
    plan = build_plan(smoke_config(**OVERRIDES).model_dump(mode="json"))
    assert [n.id for n in plan.of_step("estimate")] == [f"estimate-{n}" for n in GRADED]
    for node in plan.of_step("estimate"):
        expected = {"prepare", "train_base", "select"}
        assert set(node.upstream) == expected, node.id
        assert node.forward_ad == (node.params["estimator"] in {"exact", "cg", "lissa"})
    assert "base_checkpoints[train_base]" in plan["estimate-tracin"].inputs
    assert set(plan["grade"].upstream) == {"aggregate", *(f"estimate-{n}" for n in GRADED)}
    assert "grade" in plan["report"].upstream
    # one estimator's setting re-stamps that estimator and what reads the table, nothing else
    other = smoke_config(**OVERRIDES, grade__estimators__cg__tol=1e-5)
    changed = {
        n.id for n in build_plan(other.model_dump(mode="json")) if n.stamp != plan[n.id].stamp
    }
    assert changed == {"estimate-cg", "grade", "report"}


@pytest.mark.slow
def test_exact_node_is_the_dense_float64_damped_solve(run):
    root, cfg = run
    inputs, _ = _inputs(root, cfg, torch.float64)
    problem, theta = inputs.problem, inputs.theta
    gnh = dense_gnh(problem, theta, inputs.x_train, inputs.t_train).numpy()
    a = gnh + cfg.damping * np.eye(gnh.shape[0])
    grads = []
    for row in inputs.removed:
        g = torch.func.grad(lambda th, r=row: problem.example_losses(
            th, inputs.x_train[r], inputs.t_train[r]).sum())(theta)  # fmt: skip
        grads.append(g.numpy())
    test_grad = torch.func.grad(
        lambda th: problem.loss(problem.f(th, inputs.x_test), inputs.t_test).mean()
    )(theta).numpy()
    eps = 1.0 / inputs.n_train
    expected = eps * np.linalg.solve(a, np.stack(grads).T).T @ test_grad
    np.testing.assert_allclose(_predicted(root, "exact"), expected, rtol=DENSE_RTOL)
    # grad_dot: the same with G = 0, λ = 1 (a float32 node)
    np.testing.assert_allclose(
        _predicted(root, "grad_dot"), eps * np.stack(grads) @ test_grad, rtol=F32_RTOL
    )
    cost = _read(root, "estimate/exact/cost.parquet", schemas.ESTIMATE_COST, "estimate")
    assert cost["dtype"].iloc[0] == "float64" and not cost["failed"].iloc[0]
    assert cost["wall_time_s"].iloc[0] > 0 and cost["peak_memory_mb"].iloc[0] >= 0


@pytest.mark.slow
def test_checkpoints_replay_base_training_and_tracin_uses_them(run):
    """θ at epochs 0 and 2 of a torch.optim.SGD replay (same batch order, lr 0.1, then 0.05 from
    epoch 3); checkpoint k stands for Σ η over its epochs: 2·0.1 and 0.1 + 0.05."""
    root, cfg = run
    inputs, extra = _inputs(root, cfg, torch.float32)
    ck = artifacts.load_checkpoint(root / "base/checkpoints.pt", step="train_base", stamp=None)
    assert ck.meta["visits"] == [2.0, 2.0] and ck.meta["batch_size"] == 32
    np.testing.assert_allclose(np.array(ck.meta["lr"]) * 2, [0.2, 0.15], rtol=1e-12)
    module = extra["module"]
    theta0 = artifacts.load_checkpoint(root / "base/theta0.pt", step="train_base", stamp=None)
    module.load_state_dict(theta0.state_dict)
    orders = artifacts.load_checkpoint(root / "base/orders.pt", step="train_base", stamp=None)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3], 0.5)
    loss = get_loss("cross_entropy")
    replay = {}
    for epoch, order in enumerate(orders.state_dict["orders"]):
        if epoch in (0, 2):
            replay[epoch] = flat_params(module).detach().clone()
        for idx in batches_of(order, 32):
            opt.zero_grad()
            loss(module(inputs.x_train[idx]), inputs.t_train[idx]).mean().backward()
            opt.step()
        sched.step()
    stored = torch.cat([v.reshape(v.shape[0], -1) for v in ck.state_dict.values()], dim=1)
    for k, epoch in enumerate((0, 2)):
        torch.testing.assert_close(stored[k], replay[epoch], rtol=EAGER_RTOL, atol=1e-6)
    # TracIn: Σ_k (η_k visits_k / B) ∇L_test(θ_k)ᵀ g_z(θ_k), in float64 at the replayed θ_k
    p64 = Problem.from_module(module.double(), get_loss("cross_entropy"))
    x, t = inputs.x_train.double(), inputs.t_train
    xt = inputs.x_test.double()
    expected = np.zeros(inputs.num_removals)
    for (epoch, theta), weight in zip(replay.items(), (0.2 / 32, 0.15 / 32), strict=True):
        th = theta.double()
        test_grad = torch.func.grad(lambda p: p64.loss(p64.f(p, xt), inputs.t_test).mean())(th)
        for m, row in enumerate(inputs.removed):
            g = torch.func.grad(lambda p, r=row: p64.example_losses(p, x[r], t[r]).sum())(th)
            expected[m] += weight * float(g @ test_grad)
        del epoch
    np.testing.assert_allclose(_predicted(root, "tracin"), expected, rtol=F32_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cg", "lissa", "kfac", "grad_cos"])
def test_each_node_equals_the_library_estimator_on_the_stored_inputs(run, name):
    root, cfg = run
    inputs, _ = _inputs(root, cfg, torch.float32)
    est = get_estimator(name)(inputs, cfg.grade.estimators[name])
    np.testing.assert_allclose(
        _predicted(root, name), est.predicted_change.double().numpy(), rtol=SAME_RTOL, atol=1e-12
    )
    node = _estimate(root, name)["self_influence"]
    if est.self_influence is None:
        assert node.isna().all()
    else:
        np.testing.assert_allclose(node.to_numpy(), est.self_influence.double().numpy(),
                                   rtol=SAME_RTOL)  # fmt: skip


@pytest.mark.slow
def test_grades_are_scipy_correlations_with_intervals_and_a_consistent_rank(run):
    root, _ = run
    grades = _read(root, "grade/grades.parquet", schemas.GRADES, "grade")
    changes = _read(
        root, "aggregate/test_loss_changes.parquet", schemas.TEST_LOSS_CHANGES, "aggregate"
    )
    wide = changes.pivot(index="removal_id", columns="source", values="test_loss_change")
    refs = {"pbrf", "pbrf_paper", "linearized_pbrf", "exact", "cold"}
    assert set(grades["reference"]) == refs
    assert set(grades["estimator"]) == set(GRADED)
    assert len(grades) == len(GRADED) * len(refs) - 1  # no exact-vs-exact row
    for r in grades.itertuples(index=False):
        pred = _predicted(root, r.estimator)
        actual = _predicted(root, "exact") if r.reference == "exact" else wide[r.reference]
        assert r.pearson == pytest.approx(sst.pearsonr(pred, actual)[0], rel=1e-9)
        assert r.spearman == pytest.approx(sst.spearmanr(pred, actual)[0], rel=1e-9, abs=1e-12)
        for m in ("pearson", "spearman"):
            low, value, high = getattr(r, f"{m}_low"), getattr(r, m), getattr(r, f"{m}_high")
            assert math.isnan(low) or low - 1e-12 <= value <= high + 1e-12
        assert r.n == 6 and not r.failed
    key = grades[grades["reference"] == "pbrf"].sort_values("rank")
    assert list(key["rank"]) == list(range(1, len(GRADED) + 1))
    assert key["spearman"].is_monotonic_decreasing

    # Δθ against the exact solve's, recomputed from the stored responses
    def delta(name):
        sd = artifacts.load_checkpoint(
            root / f"estimate/{name}/delta.pt", step="estimate", stamp=None
        ).state_dict
        return torch.cat([v.reshape(v.shape[0], -1) for v in sd.values()], dim=1).double()

    exact = delta("exact")
    err = grades.drop_duplicates("estimator").set_index("estimator")["response_rel_error"]
    for name in ("cg", "lissa", "kfac", "grad_dot"):
        assert err[name] == pytest.approx(float((delta(name) - exact).norm() / exact.norm()))
    assert err[["tracin", "grad_cos"]].isna().all()
    calibrated = grades.groupby("estimator")["calibrated"].all()
    assert not calibrated["grad_cos"] and calibrated.drop("grad_cos").all()


@pytest.mark.slow
def test_the_report_has_the_grading_section_and_the_ranking_plot(run):
    root, _ = run
    text = (root / "report" / "report.md").read_text()
    section = text.split("## Grading influence estimators against the PBRF", 1)[1]
    for name in GRADED:
        assert f"| {name}" in section
    assert "(../grade/ranking.png)" in section
    assert (root / "grade" / "ranking.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
