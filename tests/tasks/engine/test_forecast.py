"""The estimate printed before a run: its work counted from the config, a measured step time,
and the memory of a variant's largest shard."""

from __future__ import annotations

import math

import pytest

from pbrf.study.memory import retrain_memory
from pbrf.study.presets import load_preset
from tasks.engine.forecast import Forecast, forecast, model_epochs


@pytest.mark.parametrize(
    ("preset", "scale", "overrides"),
    [
        ("digits-mlp", "smoke", {}),
        ("digits-mlp", "smoke", {"retrain.variants": ["cold"], "train.epochs": 7}),
        ("cancer-lr", "smoke", {"retrain.epochs_fraction": 0.01}),
    ],
)
def test_model_epochs_count_base_training_and_every_variants_removals(preset, scale, overrides):
    cfg = load_preset(preset, overrides, scale)
    k, m = cfg.train.epochs, cfg.select.num_removals
    short = max(1, round(k * cfg.retrain.epochs_fraction))
    total = k  # base training: one model, K epochs
    for variant in cfg.retrain.variants:
        for _ in range(m):
            total += (k if variant == "cold" else 0) + short
    assert model_epochs(cfg) == total


def test_forecast_multiplies_work_by_the_measured_step_and_bounds_memory_by_a_shard():
    cfg = load_preset("digits-mlp", {}, "smoke")
    fc = forecast(cfg)
    assert 0 < fc.step_seconds < 60 and math.isfinite(fc.step_seconds)
    n = cfg.data.sizes().train
    assert fc.steps_per_epoch == math.ceil(n / min(cfg.train.batch_size or n, n))
    assert fc.seconds == pytest.approx(fc.model_epochs * fc.steps_per_epoch * fc.step_seconds)
    m = cfg.select.num_removals
    assert fc.peak_bytes == retrain_memory(cfg).total(m)
    sharded = forecast(load_preset("digits-mlp", {"retrain.shards": m}, "smoke"))
    assert sharded.peak_bytes == retrain_memory(cfg).total(1) < fc.peak_bytes


def test_the_line_names_time_work_and_memory():
    fc = Forecast(model_epochs=1200, step_seconds=0.5, steps_per_epoch=6, peak_bytes=3 * 2**30)
    assert fc.seconds == 3600
    assert fc.line() == (
        "estimate: ≈ 1 h of training (1.2e+03 model-epochs × 6 steps × 500 ms per step measured "
        "here), peak memory ≈ 3 GiB"
    )
    assert fc.short() == "≈ 1 h of training, peak ≈ 3 GiB"


def test_the_step_is_timed_with_the_run_steps_threads_and_the_count_is_restored(monkeypatch):
    import torch

    from tasks.engine.forecast import step_seconds

    cfg = load_preset("digits-mlp", {}, "smoke")
    before, seen, real = torch.get_num_threads(), [], torch.autograd.grad

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    step_seconds(cfg, 16, threads=1)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
