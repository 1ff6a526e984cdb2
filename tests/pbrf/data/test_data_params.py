"""Bundled data sets and the flat-parameter views."""

from __future__ import annotations

import pytest
import torch

from pbrf.data import load_dataset
from pbrf.data.config import DataConfig
from pbrf.models import build_model
from pbrf.params import ParamSpec, flat_params, load_flat_


@pytest.mark.parametrize(
    ("name", "task", "out"),
    [("breast_cancer", "binary", 1), ("digits", "multiclass", 10), ("diabetes", "regression", 1)],
)
def test_bundled_datasets_split_and_standardize(name, task, out):
    cfg = DataConfig(name=name)
    ds = load_dataset(cfg)
    assert ds.task == task and ds.output_dim == out
    assert ds.n_train == cfg.n_train()
    assert (
        ds.x_test.shape[0] + ds.n_train
        == {"breast_cancer": 569, "digits": 1797, "diabetes": 442}[name]
    )
    mean, std = ds.x_train.mean(0), ds.x_train.std(0, unbiased=False)
    assert mean.abs().max() < 1e-5
    assert ((std - 1).abs() < 1e-4).logical_or(std < 1e-6).all()  # constant pixels stay 0
    again = load_dataset(cfg)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.t_train, ds.t_train)
    other = load_dataset(DataConfig(name=name, seed=1))
    assert not torch.equal(other.x_train, ds.x_train)


def test_train_size_subsamples():
    ds = load_dataset(DataConfig(name="digits", train_size=100))
    assert ds.n_train == 100 == DataConfig(name="digits", train_size=100).n_train()


def test_flatten_unflatten_roundtrip_single_and_stacked():
    model = build_model("mlp", input_shape=(4,), output_dim=2, seed=0, width=3, depth=1)
    spec = ParamSpec.of(model)
    theta = flat_params(model)
    assert theta.shape == (spec.dim,) == (4 * 3 + 3 + 3 * 2 + 2,)
    torch.testing.assert_close(spec.flatten(spec.unflatten(theta)), theta)
    stacked = torch.stack([theta, 2 * theta])
    parts = spec.unflatten(stacked)
    assert parts["net.0.weight"].shape == (2, 3, 4)
    torch.testing.assert_close(spec.flatten(parts), stacked)
    load_flat_(model, 2 * theta)
    torch.testing.assert_close(flat_params(model), 2 * theta)
    with pytest.raises(ValueError, match="has 5 entries, model has 23"):
        spec.unflatten(torch.zeros(5))
