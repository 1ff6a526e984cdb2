"""Each step function on its own, on a tiny digits study (tests/pipeline_fixtures.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pipeline_fixtures import tiny_config

from pbrf.config import VARIANTS
from pbrf.data import load_dataset
from pbrf.models import build_model
from tasks import datafiles, schemas
from tasks.aggregate import GAP_CHAIN
from tasks.artifacts import StaleArtifactError, load_checkpoint, read_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout
from tasks.steps import run_step, step_function, write_config

CFG = tiny_config()
M, N, P = 3, 100, 10
ATOL = 1e-6


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunLayout:
    """All steps once, in order, into one run directory."""
    out = tmp_path_factory.mktemp("run")
    write_config(out, CFG)
    for step in ("prepare", "train_base", "select"):
        run_step(step, out, CFG)
    for v in VARIANTS:
        run_step("retrain", out, CFG, variant=v)
    for step in ("influence", "aggregate", "report"):
        run_step(step, out, CFG)
    return RunLayout(out)


def _table(path: Path, table: schemas.TableSchema, step: str):
    return read_table(path, table, step=step, config_hash=config_hash(CFG, step))


def test_export_is_deterministic_and_csv_gives_sklearn_tensors(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    datafiles.export(a)
    datafiles.export(b)
    for name in datafiles.TASKS:
        assert (a / f"{name}.csv").read_bytes() == (b / f"{name}.csv").read_bytes()
        for extra in ({}, {"data__train_size": 50, "data__seed": 3}):
            cfg = tiny_config(data__name=name, **extra).data
            ref, got = load_dataset(cfg), datafiles.load_dataset_from_dir(cfg, a)
            for field in ("x_train", "t_train", "x_test", "t_test"):
                assert torch.equal(getattr(ref, field), getattr(got, field)), (name, field)
            assert (ref.task, ref.output_dim) == (got.task, got.output_dim)


def test_prepare_from_data_dir_equals_sklearn(tmp_path: Path, run: RunLayout) -> None:
    datafiles.export(tmp_path / "data")
    step_function("prepare")(tmp_path / "csv", CFG, data_dir=tmp_path / "data")
    h = config_hash(CFG, "prepare")
    a = load_checkpoint(run.dataset, step="prepare", config_hash=h)
    b = load_checkpoint(RunLayout(tmp_path / "csv").dataset, step="prepare", config_hash=h)
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.meta["n_train"] == N and a.meta["task"] == "multiclass"


def test_train_base_saves_loadable_state_dicts_and_batch_order(run: RunLayout) -> None:
    h = config_hash(CFG, "train_base")
    model = build_model("mlp", input_shape=(64,), output_dim=10, width=16, depth=2)
    for path in (run.theta0, run.theta_s):
        model.load_state_dict(load_checkpoint(path, step="train_base", config_hash=h).state_dict)
    theta0 = load_checkpoint(run.theta0, step="train_base", config_hash=h).state_dict
    fresh = build_model("mlp", input_shape=(64,), output_dim=10, width=16, depth=2, seed=0)
    assert all(torch.equal(theta0[k], v) for k, v in fresh.state_dict().items())
    orders = load_checkpoint(run.orders, step="train_base", config_hash=h).state_dict["orders"]
    assert orders.shape == (CFG.train.epochs, N)
    assert all(torch.equal(row.sort().values, torch.arange(N)) for row in orders)
    hist = _table(run.base_history, schemas.BASE_HISTORY, "train_base")
    assert len(hist) == CFG.train.epochs and hist["objective"].notna().all()


def test_select_is_seeded_and_without_replacement(run: RunLayout, tmp_path: Path) -> None:
    rem = _table(run.removed, schemas.REMOVED, "select")
    assert sorted(rem["removal_id"]) == list(range(M))
    assert rem["train_index"].is_unique and rem["train_index"].between(0, N - 1).all()
    tp = _table(run.test_points, schemas.TEST_POINTS, "select")
    assert len(tp) == P and tp["test_index"].is_unique
    # the same seed gives the same sets; another removal seed other ones
    other = tiny_config(retrain__removal_seed=1)
    (tmp_path / "prepare").mkdir()
    run_step("prepare", tmp_path, other)
    run_step("select", tmp_path, other)
    rem2 = read_table(
        RunLayout(tmp_path).removed, schemas.REMOVED, step="select",
        config_hash=config_hash(other, "select"),
    )  # fmt: skip
    assert rem2["train_index"].tolist() != rem["train_index"].tolist()


@pytest.mark.parametrize("variant", VARIANTS)
def test_retrain_writes_stacked_params_and_test_losses(run: RunLayout, variant: str) -> None:
    h = config_hash(CFG, "retrain")
    ck = load_checkpoint(run.variant_params(variant), step="retrain", config_hash=h)
    assert ck.state_dict["net.0.weight"].shape == (M, 16, 64)
    tab = _table(run.variant_removals(variant), schemas.VARIANT_REMOVALS, "retrain")
    assert tab["removal_id"].tolist() == list(range(M))
    change = tab["test_loss"] - tab["base_test_loss"]
    assert (change - tab["test_loss_change"]).abs().max() < ATOL
    removed = _table(run.removed, schemas.REMOVED, "select")["train_index"].tolist()
    assert [r[0] for r in tab["removed_indices"]] == removed
    hist = _table(run.variant_history(variant), schemas.VARIANT_HISTORY, "retrain")
    assert len(hist) % M == 0 and set(hist["variant"]) == {variant}


def test_retrain_shards_give_the_same_optima(run: RunLayout, tmp_path: Path) -> None:
    sharded = tiny_config(retrain__shards=3)
    for d in ("prepare", "base", "select"):
        (tmp_path / d).symlink_to(run.root / d)
    run_step("retrain", tmp_path, sharded, variant="warm")
    h = config_hash(CFG, "retrain")
    assert config_hash(sharded, "retrain") == h
    a = load_checkpoint(run.variant_params("warm"), step="retrain", config_hash=h).state_dict
    b = load_checkpoint(RunLayout(tmp_path).variant_params("warm"), step="retrain", config_hash=h)
    assert all(torch.allclose(a[k], b.state_dict[k], atol=ATOL) for k in a)


def test_influence_records_parameters_predictions_and_solver(run: RunLayout) -> None:
    h = config_hash(CFG, "influence")
    theta_if = load_checkpoint(run.influence_params, step="influence", config_hash=h)
    assert theta_if.state_dict["net.4.bias"].shape == (M, 10)
    tab = _table(run.influence_removals, schemas.INFLUENCE_REMOVALS, "influence")
    assert len(tab) == M and tab["predicted_test_loss_change"].map(math.isfinite).all()
    assert (tab["self_influence"] > 0).all()  # ε gᵀ(G+λI)⁻¹g > 0
    solver = _table(run.solver, schemas.SOLVER, "influence").iloc[0]
    assert solver["solver"] == "lissa" and solver["depth"] == CFG.influence.depth
    assert solver["horizon"] == pytest.approx(solver["depth"] / solver["scale"])
    assert solver["scale"] > solver["top_eigenvalue"]
    assert solver["epsilon"] == pytest.approx(1 / N)


def test_influence_with_exact_solver(run: RunLayout, tmp_path: Path) -> None:
    exact = tiny_config(influence__solver="exact")
    for d in ("prepare", "base", "select"):
        (tmp_path / d).symlink_to(run.root / d)
    run_step("influence", tmp_path, exact)
    solver = read_table(
        RunLayout(tmp_path).solver, schemas.SOLVER, step="influence",
        config_hash=config_hash(exact, "influence"),
    ).iloc[0]  # fmt: skip
    assert solver["solver"] == "exact" and math.isnan(solver["horizon"])


def test_aggregate_gaps_correlations_and_horizons(run: RunLayout) -> None:
    gaps = _table(run.aggregate("gaps"), schemas.GAPS, "aggregate")
    assert gaps["gap"].tolist() == [g for g, _, _ in GAP_CHAIN]
    assert (gaps["mean"] >= 0).all() and (gaps["n"] == M).all()
    per = _table(run.aggregate("gaps_per_removal"), schemas.GAPS_PER_REMOVAL, "aggregate")
    means = per.groupby("gap")["distance"].mean()
    assert all(abs(means[r.gap] - r.mean) < 1e-9 for r in gaps.itertuples())
    corr = _table(run.aggregate("correlations"), schemas.CORRELATIONS, "aggregate")
    assert corr["reference"].tolist() == list(VARIANTS)
    assert corr["pearson"].between(-1, 1).all()
    hz = _table(run.aggregate("horizons"), schemas.HORIZONS, "aggregate").iloc[0]
    # tiny config: LiSSA T/σ ≈ 60 vs PBRF η·S = 0.1 × 1 epoch × 1 step — flagged
    assert hz["pbrf_horizon"] == pytest.approx(0.1 * 2) and hz["mismatch"]
    assert "WARNING" in hz["message"]


def test_aggregate_uses_only_the_variants_that_ran(run: RunLayout, tmp_path: Path) -> None:
    partial = tiny_config(retrain__variants=["cold", "warm"])
    for d in ("prepare", "base", "select", "influence"):
        (tmp_path / d).symlink_to(run.root / d)
    for v in ("cold", "warm"):
        (tmp_path / "retrain").mkdir(exist_ok=True)
        (tmp_path / "retrain" / v).symlink_to(run.variant_dir(v))
    run_step("aggregate", tmp_path, partial)
    run_step("report", tmp_path, partial)
    gaps = read_table(
        RunLayout(tmp_path).aggregate("gaps"), schemas.GAPS, step="aggregate",
        config_hash=config_hash(partial, "aggregate"),
    )  # fmt: skip
    assert gaps["gap"].tolist() == ["warm_start"]
    assert "| Warm-Start" in (tmp_path / "report" / "report.md").read_text()


def test_report_tables_figures_and_metrics(run: RunLayout) -> None:
    text = run.report_md.read_text()
    assert "| Model | Dataset | Warm-Start | Proximity | Non-Convergence |" in text
    assert "| mlp | digits |" in text and " ± " in text
    assert "| Cold-Start (LOO) * |" in text and "| PBRF * |" in text
    assert "horizon T/σ" in text and "WARNING" in text
    for png in ("figure1_test_loss_scatter.png", "figure4_gaps.png"):
        assert (run.report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(run.metrics.read_text())
    assert set(metrics["gaps"]) == {g for g, _, _ in GAP_CHAIN}
    assert metrics["horizons"]["mismatch"] is True
    csv = (run.report_dir / "test_loss_changes.csv").read_text().splitlines()
    assert csv[0] == "removal_id,influence,cold,warm,proximal,pbrf,linearized_pbrf"
    assert len(csv) == M + 1


def test_step_refuses_inputs_from_another_config(run: RunLayout, tmp_path: Path) -> None:
    (tmp_path / "prepare").symlink_to(run.root / "prepare")
    other = tiny_config(data__seed=5)  # changes the 'prepare' hash
    with pytest.raises(StaleArtifactError, match="Rerun step 'prepare'"):
        run_step("train_base", tmp_path, other)
    assert not (tmp_path / "base" / "theta_s.pt").exists()


def test_run_step_record_and_argument_checks(run: RunLayout) -> None:
    rec = run_step("report", run.root, CFG)
    assert rec["step"] == "report" and rec["config_hash"] == config_hash(CFG, "report")
    assert "report/report.md" in rec["outputs"]
    with pytest.raises(ValueError, match="variant"):
        run_step("retrain", run.root, CFG)
    with pytest.raises(ValueError, match="unknown step"):
        run_step("nope", run.root, CFG)
