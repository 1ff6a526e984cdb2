"""The config is the user's contract: bad values name their field, what would be ignored is
rejected, and cross-section mismatches fail at validation time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.cli.config_cmds import parse_overrides
from flows.cli.errors import ConfigError
from pbrf.models import MODEL_OPTIONS, model_kwargs
from pbrf.study.config import StudyConfig
from pbrf.study.presets import PRESETS, apply_overrides, load_preset


def _locs(info: pytest.ExceptionInfo) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"damping": -0.1}, "damping"),
        ({"damping": 0}, "damping"),
        ({"influence": {"solver": {"name": "lissa", "scale": 0}}}, "influence.solver.lissa.scale"),
        (
            {"influence": {"solver": {"name": "lissa", "scale": "big"}}},
            "influence.solver.lissa.scale",
        ),
        ({"influence": {"solver": {"name": "lissa", "depth": 0}}}, "influence.solver.lissa.depth"),
        ({"influence": {"solver": "newton"}}, "influence.solver"),
        ({"influence": {"solver": {"name": "cg", "depth": 5}}}, "influence.solver.cg.depth"),
        ({"model": {"name": "gpt5"}}, "model"),
        ({"model": {"name": "mlp", "width": "wide"}}, "model.mlp.width"),
        ({"model": {"name": "mlp", "gn_groups": 8}}, "model.mlp.gn_groups"),
        ({"train": {"optimizer": {"name": "sgd", "lr": 0}}}, "train.optimizer.sgd.lr"),
        (
            {"train": {"optimizer": {"name": "momentum", "momentum": 1.0}}},
            "train.optimizer.momentum.momentum",
        ),
        (
            {"train": {"optimizer": {"name": "sgd", "momentum": 0.9}}},
            "train.optimizer.sgd.momentum",
        ),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer"),
        ({"train": {"weight_decay": -1}}, "train.weight_decay"),
        (
            {"train": {"optimizer": {"name": "sgd", "lr_milestones": [5, 2]}}},
            "train.optimizer.sgd.lr_milestones",
        ),
        ({"retrain": {"variants": ["cold", "lukewarm"]}}, "retrain.variants"),
        ({"retrain": {"variants": []}}, "retrain.variants"),
        ({"retrain": {"pbrf": {"horizon": "matched", "epochs": 10}}}, "retrain.pbrf"),
        ({"select": {"num_removals": 0}}, "select.num_removals"),
        ({"data": {"test_fraction": 1.5}}, "data.test_fraction"),
        ({"data": {"name": "mnist2"}}, "data.name"),
        ({"device": "tpu"}, "device"),
        ({"eval_dtype": "float16"}, "eval_dtype"),
        ({"trian": {"epochs": 1}}, "trian"),  # typo'd section: extra fields are forbidden
    ],
)
def test_bad_values_name_their_field(data, field):
    with pytest.raises(ValidationError) as info:
        StudyConfig.model_validate(data)
    assert any(loc.startswith(field) for loc in _locs(info)), _locs(info)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"select": {"num_removals": 2000}},
            r"select.num_removals × select.group_size = 2000 exceeds the 1437",
        ),
        (
            {
                "data": {"name": "digits", "train_size": 100},
                "select": {"num_removals": 20, "group_size": 6},
            },
            "exceeds the 100 training examples",
        ),
        ({"model": "lenet"}, r"model.name=lenet cannot read data.name=digits \(tabular inputs"),
        ({"model": "transformer_lm"}, "takes text inputs"),
        (
            {"model": {"name": "autoencoder"}, "data": {"name": "mnist", "target": "label"}},
            "model.name=autoencoder cannot read data.name=mnist",
        ),
        (
            {"loss": "squared_error", "data": {"name": "diabetes"}, "model": "logistic_regression"},
            "cannot read",
        ),
        (
            {"loss": "binary_cross_entropy"},
            "loss: binary_cross_entropy does not fit data.name=digits",
        ),
        (
            {"influence": {"solver": "cg"}},
            r"retrain.pbrf.horizon: 'matched' needs LiSSA.*influence.solver.name=cg has no horizon",
        ),
        (
            {"train": {"optimizer": "adam"}},
            r"retrain.pbrf.horizon: 'matched'.*train.optimizer.name=adam has no fixed step",
        ),
        (
            {"train": {"optimizer": "lbfgs"}},
            "batch_size: L-BFGS minimizes the full-batch objective",
        ),
        ({"retrain": {"shards": 30}}, r"retrain.shards \(30\) exceeds select.num_removals \(20\)"),
    ],
)
def test_cross_section_mismatches_are_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        StudyConfig.model_validate(data)


def test_model_fit_is_checked_against_the_data_shapes():
    """A network that cannot read the data fails with the builder's own reason, at validation."""
    with pytest.raises(ValidationError, match=r"inputs of shape \(1, 28, 28\).*widths"):
        StudyConfig.model_validate(
            {
                "data": {"name": "mnist", "target": "input", "standardize": False},
                "model": {"name": "autoencoder", "widths": [784, 30, 10]},
                "loss": "binary_cross_entropy",
            }
        )
    ok = StudyConfig.model_validate(
        {"data": {"name": "mnist", "fraction": 0.1}, "model": {"name": "lenet"}}
    )
    assert ok.loss_name() == "cross_entropy"


def test_option_models_mirror_the_builders():
    """Every builder keyword is an option field with the same default (one source of truth)."""
    for name, options in MODEL_OPTIONS.items():
        fields = {
            k: f.default for k, f in options.model_fields.items() if k not in ("name", "seed")
        }
        assert fields == model_kwargs(name), name


def test_shorthand_names_and_momentum_only_where_it_applies():
    cfg = StudyConfig.model_validate(
        apply_overrides({}, {"train.optimizer": "momentum", "train.optimizer.momentum": 0.5})
    )
    assert cfg.train.optimizer.name == "momentum" and cfg.train.optimizer.momentum == 0.5
    with pytest.raises(ValidationError) as info:
        StudyConfig.model_validate(
            apply_overrides({}, parse_overrides(["train.optimizer=sgd", "train.momentum=0.9"]))
        )
    assert "train.momentum" in _locs(info)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_at_every_scale(name):
    preset = PRESETS[name]
    for scale in preset.scale_names():
        cfg = load_preset(name, scale=None if scale == "default" else scale)
        assert cfg.name == name


def test_overrides_are_dotted_yaml_values():
    got = parse_overrides(
        ["train.optimizer.lr=0.05", "influence.solver.scale=auto", "retrain.variants=[cold, pbrf]"]
    )
    assert got == {
        "train.optimizer.lr": 0.05,
        "influence.solver.scale": "auto",
        "retrain.variants": ["cold", "pbrf"],
    }
    cfg = load_preset(
        "digits-mlp",
        {"train.epochs": 7, "influence.solver.batch_size": None, "device": "cuda"},
    )
    assert cfg.train.epochs == 7 and cfg.influence.solver.batch_size is None
    assert cfg.device == "cuda"
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_overrides(["retrain.variants=[cold"])
    with pytest.raises(ValidationError, match="lr"):
        load_preset("digits-mlp", {"train.optimizer.lr": -1})
    with pytest.raises(ValueError, match="unknown preset 'mnist'"):
        load_preset("mnist")
    with pytest.raises(ValueError, match="has no scale 'huge'"):
        load_preset("digits-mlp", scale="huge")


def test_the_mlp_kernel_is_refused_for_other_networks():
    assert load_preset("concrete-mlp", {"kernel": "mlp"}, "smoke").kernel == "mlp"
    with pytest.raises(ValidationError, match=r"kernel=mlp needs model\.name=mlp"):
        load_preset("mnist-lenet", {"kernel": "mlp"}, "smoke")
    with pytest.raises(ValidationError, match="kernel"):
        load_preset("concrete-mlp", {"kernel": "fast"}, "smoke")
