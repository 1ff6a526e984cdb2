"""The paper's rows as presets: one per row of Tables 5 and 2, Appendix E's settings at the
``paper`` scale, the retraining memory estimate behind their shards, and horizons under step
decay. Nothing here trains a network longer than one epoch."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from repo_root import REPO
from tiny_problems import tiny_problem
from torch.func import grad

from flows.cli import main
from pbrf.models import build_model
from pbrf.models.footprint import activation_elements
from pbrf.responses import (
    BaseRun,
    Schedule,
    retrain,
)
from pbrf.study.config import PAPER_VARIANTS, StudyConfig
from pbrf.study.memory import (
    GiB,
    RetrainMemory,
    device_chunk,
    product_chunk,
    retrain_memory,
    shards_for,
)
from pbrf.study.presets import PRESETS, load_preset
from pbrf.study.schedules import schedule_horizon, variant_schedule
from tasks.reports.paper import paper_row

SWEEP = {1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001}
ADAM_SWEEP = {0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001}


def _paper_rows(table: str) -> list[tuple[str, str]]:
    with (REPO / "tasks" / "reports" / "paper_values.csv").open(encoding="utf-8", newline="") as fh:
        rows = [(r["model"], r["dataset"]) for r in csv.DictReader(fh) if r["table"] == table]
    return list(dict.fromkeys(rows))


# the presets that claim a row of Tables 5/2: a paper scale and a paper row (appendix studies,
# such as digits-mislabel, have a paper scale but claim no row)
ROW_PRESETS = {
    p.paper_row: name
    for name, p in PRESETS.items()
    if "paper" in p.scales and p.paper_row is not None
}


def test_each_row_is_claimed_by_one_preset_and_studies_claim_none() -> None:
    claims = [p.paper_row for p in PRESETS.values() if "paper" in p.scales and p.paper_row]
    assert len(claims) == len(set(claims))  # no preset replaces another in the row map
    assert ROW_PRESETS[("mlp", "mnist")] == "mnist-mlp"
    assert PRESETS["digits-mislabel"].paper_row is None


@pytest.mark.parametrize("name", ["mnist-mlp", "mnist-lenet"])
def test_cpu_scale_runs_the_row_on_real_mnist_digits_and_lists_every_reduction(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paper, cpu = load_preset(name, scale="paper"), load_preset(name, scale="cpu")
    assert cpu.data.name == "mnist_5k" and cpu.data.fraction is None
    assert paper_row(cpu)[:2] == PRESETS[name].paper_row  # mnist_5k stands in for MNIST
    assert (cpu.select.num_removals, cpu.select.test_points) == (20, 100)
    # the paper's variants; the horizon-matched PBRFs (this project's) are the reduction
    paper_variants = [v for v in paper.retrain.variants if v not in ("pbrf", "linearized_pbrf")]
    assert list(cpu.retrain.variants) == paper_variants
    assert main(["presets", name]) == 0
    shown = capsys.readouterr().out
    notes = PRESETS[name].scale_notes["cpu"]
    assert all(f"    - {n}" in shown for n in notes)
    changed = {k for k in PRESETS[name].scales["cpu"] if not k.startswith("data.")}
    words = {
        "model.width": "MLP 2×256",
        "train.epochs": "K = ",
        "influence.solver.depth": "LiSSA",
        "retrain.variants": "horizon-matched PBRFs",
        "train.optimizer.lr": "chosen by the paper's procedure at this scale: `pbrf tune",
    }
    for key in changed:  # every reduction beyond the data is named in a note
        assert any(words[key] in n for n in notes), key


def test_every_row_of_tables_5_and_2_has_a_preset_on_the_papers_data() -> None:
    rows5, rows2 = _paper_rows("5"), _paper_rows("2")
    assert len(rows5) == 16 and len(rows2) == 5
    for row in rows5 + rows2:
        name = ROW_PRESETS[row]  # a preset with a paper scale claims this row
        assert {"paper", "smoke"} <= set(PRESETS[name].scales)
        cfg = load_preset(name, scale="paper")
        model, dataset, stand_in = paper_row(cfg)
        assert (model, dataset, stand_in) == (*row, ""), name  # the paper's data, no stand-in


def test_presets_lists_each_row_with_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for (model, dataset), name in ROW_PRESETS.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        assert f"{model}/{dataset} (5" in line, line
        if (model, dataset) in _paper_rows("2"):
            assert f"{model}/{dataset} (5, 2" in line, line
    assert main(["presets", "mnist-autoencoder"]) == 0
    shown = capsys.readouterr().out
    assert "Section 6.1 says 1e-5" in shown and "smoke: data.fraction=None" in shown
    assert main(["presets", "no-such"]) == 2


# Appendix E.2/E.3 (and Section 6.1), as the paper states them, row by row.
_MLP = {"optimizer": "sgd", "epochs": 1000, "batch": 128, "wd": 0.0, "depth": 5000}
_CNN = {"optimizer": "momentum", "epochs": 200, "batch": 128, "wd": 5e-4, "depth": 10000}
APPENDIX_E = {
    "cancer-lr": {"optimizer": "lbfgs", "wd": 0.01, "batch": None},
    "diabetes-lr": {"optimizer": "lbfgs", "wd": 0.01, "batch": None},
    "concrete-mlp": {**_MLP, "width": 128},
    "energy-mlp": {**_MLP, "width": 128},
    "mnist-mlp": {**_MLP, "width": 1024, "fraction": 0.1},
    "fmnist-mlp": {**_MLP, "width": 1024, "fraction": 0.1},
    "mnist-autoencoder": {
        "optimizer": "momentum",
        "epochs": 1000,
        "batch": 1024,
        "wd": 5e-5,
        "depth": 10000,
        "fraction": None,
    },
    **{f"mnist-{m}": {**_CNN, "fraction": 0.1} for m in ("lenet", "alexnet", "vgg13", "resnet20")},
    **{
        f"cifar10-{m}": {**_CNN, "fraction": None, "milestones": (60, 120, 160), "gamma": 0.2}
        for m in ("lenet", "alexnet", "vgg13", "resnet20")
    },
    "ptb-transformer": {"optimizer": "adam", "epochs": 10, "batch": 20, "depth": 5000},
}


@pytest.mark.parametrize("name", sorted(APPENDIX_E))
def test_paper_scale_carries_appendix_e(name: str) -> None:
    spec = APPENDIX_E[name]
    cfg = load_preset(name, scale="paper")
    opt = cfg.train.optimizer
    assert opt.name == spec["optimizer"]
    assert cfg.train.batch_size == spec["batch"]
    assert cfg.train.weight_decay == spec.get("wd", 0.0)
    assert (cfg.select.num_removals, cfg.select.group_size) == (20, 1)
    # every row also trains the linearized PBRF at the paper's setting: each gap has its like
    assert cfg.retrain.variants == PAPER_VARIANTS and cfg.retrain.epochs_fraction == 0.5
    assert cfg.retrain.pbrf.paper_lr_factor == 0.1  # "a learning rate decayed by a factor of 10"
    assert cfg.influence.curvature == "gnh" and cfg.influence.solver.name == "lissa"
    assert cfg.damping == (0.01 if name == "ptb-transformer" else 0.001)
    if "epochs" in spec:
        assert cfg.train.epochs == spec["epochs"]
    if "depth" in spec:
        assert (cfg.influence.solver.depth, cfg.influence.solver.repeats) == (spec["depth"], 5)
    if "fraction" in spec:
        assert cfg.data.fraction == spec["fraction"] and cfg.data.train_size is None
    if "width" in spec:
        assert (cfg.model.width, cfg.model.depth) == (spec["width"], 2)
    if opt.name == "momentum":
        assert opt.momentum == 0.9
    if opt.name in ("sgd", "momentum"):
        assert opt.lr in SWEEP and cfg.retrain.pbrf.horizon == "matched"
        assert tuple(opt.lr_milestones) == spec.get("milestones", ())
        assert opt.lr_gamma == spec.get("gamma", 1.0)
    if opt.name == "adam":  # no fixed step: the PBRF cannot be matched to LiSSA's horizon
        assert opt.lr in ADAM_SWEEP and cfg.retrain.pbrf.horizon == "explicit"
        assert (cfg.model.d_model, cfg.model.n_heads, cfg.model.n_layers) == (256, 2, 2)
    if name == "mnist-autoencoder":
        assert cfg.data.target == "input" and cfg.loss_name() == "binary_cross_entropy"
        assert cfg.model.widths is None  # [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    assert PRESETS[name].notes, "every row records the choices the paper leaves open"


# --------------------------------------------------------------------------- memory


def test_activation_count_of_an_mlp_is_its_layer_outputs() -> None:
    mlp = build_model("mlp", input_shape=(1, 28, 28), output_dim=10, width=1024, depth=2)
    # input 784; Linear 1024, ReLU 1024, Linear 1024, ReLU 1024, Linear 10; the output 10 again
    assert activation_elements(mlp, (1, 28, 28), tokens=False) == 784 + 4 * 1024 + 10 + 10
    lenet = build_model("lenet", input_shape=(1, 28, 28), output_dim=10)
    # conv 6@28² (padding 2), ReLU, pool 6@14², conv 16@10², ReLU, pool 16@5², FC 120/84/10
    conv = 2 * 6 * 28 * 28 + 6 * 14 * 14 + 2 * 16 * 10 * 10 + 16 * 5 * 5
    assert (
        activation_elements(lenet, (1, 28, 28), tokens=False)
        == 784 + conv + 2 * 120 + 2 * 84 + 10 + 10
    )


def test_retrain_memory_is_parameters_states_and_saved_activations() -> None:
    cfg = load_preset("mnist-mlp", scale="paper")
    mem = retrain_memory(cfg)
    d = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    acts = 784 + 4 * 1024 + 10 + 10
    assert (mem.params, mem.activations, mem.batch) == (d, acts, 128)
    # float32: δ, its gradient, two temporaries (4 vectors of d), no SGD state; 128 examples'
    # activations kept twice (output and next input) and doubled by the jvp's tangents
    assert mem.per_model == 4 * (4 * d + 128 * acts * 2 * 2)
    assert retrain_memory(cfg, linearized=False).per_model == 4 * (4 * d + 128 * acts * 2)


def test_shards_are_the_fewest_that_fit_the_budget() -> None:
    mem = RetrainMemory(params=1, activations=1, batch=1, per_model=GiB, shared=0)
    assert shards_for(mem, 20, 16 * GiB) == 3  # 60 % of 16 GiB holds 9 models: 9 + 9 + 2
    assert shards_for(mem, 20, 40 * GiB) == 1
    with pytest.raises(ValueError, match=r"lower train\.batch_size"):
        shards_for(mem, 20, 1 * GiB)


def test_curvature_products_are_chunked_to_the_device_memory() -> None:
    cfg = load_preset("mnist-mlp", scale="paper")
    acts = 784 + 4 * 1024 + 10 + 10
    # 20 vectors at once, float32, activations + jvp tangents + vjp: 3 copies, 60 % of 16 GiB
    assert product_chunk(cfg, 20, 16 * GiB) == int(0.6 * 16 * GiB // (3 * 20 * acts * 4))
    assert product_chunk(cfg, 20, 1.0) == 1
    assert device_chunk(cfg, 20) is None  # on a CPU: one pass over the data, as before


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if "paper" in p.scales])
def test_paper_scale_shards_fit_a_16_gb_gpu_by_the_estimate(name: str) -> None:
    cfg = load_preset(name, scale="paper")
    mem = retrain_memory(cfg)
    assert cfg.retrain.shards == shards_for(mem, cfg.select.num_removals, 16 * GiB)
    largest = math.ceil(cfg.select.num_removals / cfg.retrain.shards)
    assert mem.total(largest) <= 0.6 * 16 * GiB


# --------------------------------------------------------------------------- step decay


def test_horizons_use_the_rate_in_effect_after_the_base_run() -> None:
    """K = 5 epochs with ×0.5 decays at epochs 2 and 4: warm-started variants step at 0.1/4."""
    cfg = StudyConfig.model_validate(
        {
            "data": {"name": "digits", "train_size": 24},
            "model": {"name": "mlp", "width": 6, "depth": 1},
            "train": {
                "optimizer": {"name": "sgd", "lr": 0.1, "lr_milestones": [2, 4], "lr_gamma": 0.5},
                "epochs": 5,
                "batch_size": None,
            },
        }
    )
    eta = 0.1 * 0.5 * 0.5
    matched = variant_schedule(cfg, "pbrf", 24, lissa_horizon=10.0)
    assert matched.epochs == round(10.0 / eta)  # one full-batch step per epoch
    assert schedule_horizon(cfg, matched, 24) == pytest.approx(10.0)
    assert schedule_horizon(cfg, Schedule(7, 0.1), 24) == pytest.approx(eta * 0.1 * 7)
    # the trainer steps at that rate from θˢ: one warm-start step is θˢ − η ∇Q(θˢ) by hand
    problem, theta, x, t = tiny_problem("cross_entropy", n=24)
    removed = torch.tensor([[3]])
    keep = torch.arange(24) != 3

    def q(th: torch.Tensor) -> torch.Tensor:  # Eq. 2 with ε = 1/N: example 3 deleted
        return problem.example_losses(th, x[keep], t[keep]).sum() / 24

    base = BaseRun(theta, theta, torch.empty(0, 0, dtype=torch.long), torch.empty(0))
    res = retrain(
        "warm",
        problem,
        base,
        x,
        t,
        removed,
        train=cfg.train,
        damping=1e-3,
        schedule=Schedule(1, 1.0),
    )
    torch.testing.assert_close(res.delta[0], -eta * grad(q)(theta), rtol=1e-10, atol=1e-14)
