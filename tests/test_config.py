"""Config validation names the bad field; presets and overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pbrf.config import StudyConfig
from pbrf.presets import PRESETS, apply_overrides, load_preset, parse_override


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"damping": -0.1}, "damping"),
        ({"damping": 0}, "damping"),
        ({"influence": {"scale": 0}}, "influence.scale"),
        ({"influence": {"scale": -3.0}}, "influence.scale"),
        ({"influence": {"scale": "big"}}, "influence.scale"),
        ({"influence": {"depth": 0}}, "influence.depth"),
        ({"influence": {"solver": "newton"}}, "influence.solver"),
        ({"model": {"name": "gpt5"}}, "model.name"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"momentum": 1.0}}, "train.momentum"),
        ({"train": {"weight_decay": -1}}, "train.weight_decay"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer"),
        ({"retrain": {"variants": ["cold", "lukewarm"]}}, "retrain.variants"),
        ({"retrain": {"num_removals": 0}}, "retrain.num_removals"),
        ({"data": {"test_fraction": 1.5}}, "data.test_fraction"),
        ({"data": {"name": "mnist2"}}, "data.name"),
        ({"device": "tpu"}, "device"),
        ({"trian": {"lr": 0.1}}, "trian"),  # typo'd section: extra fields are forbidden
    ],
)
def test_bad_values_name_their_field(data, field):
    with pytest.raises(ValidationError) as info:
        StudyConfig.model_validate(data)
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs


def test_more_removals_than_training_examples_is_refused():
    with pytest.raises(
        ValidationError, match=r"retrain.num_removals × retrain.group_size = 2000 exceeds the 1437"
    ):
        StudyConfig.model_validate({"data": {"name": "digits"}, "retrain": {"num_removals": 2000}})
    with pytest.raises(ValidationError, match="exceeds the 100 training examples"):
        StudyConfig.model_validate(
            {
                "data": {"name": "digits", "train_size": 100},
                "retrain": {"num_removals": 20, "group_size": 6},
            }
        )


def test_unknown_model_lists_the_choices():
    with pytest.raises(
        ValidationError, match=r"unknown model 'gpt5'; choose one of \[.*'resnet20'"
    ):
        StudyConfig.model_validate({"model": {"name": "gpt5"}})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate(name):
    cfg = load_preset(name)
    assert cfg.name == name


def test_overrides_are_dotted_yaml_values():
    assert parse_override("train.lr=0.05") == (["train", "lr"], 0.05)
    assert parse_override("influence.scale=auto") == (["influence", "scale"], "auto")
    assert parse_override("retrain.variants=[cold, pbrf]") == (
        ["retrain", "variants"],
        ["cold", "pbrf"],
    )
    cfg = load_preset("digits-mlp", ["train.epochs=7", "influence.batch_size=null", "device=cuda"])
    assert cfg.train.epochs == 7 and cfg.influence.batch_size is None and cfg.device == "cuda"
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match=r"key\.path=value"):
        parse_override("train.lr")
    with pytest.raises(ValidationError, match="lr"):
        load_preset("digits-mlp", ["train.lr=-1"])
    with pytest.raises(ValueError, match="unknown preset 'mnist'"):
        load_preset("mnist")


def test_section_hash_tracks_only_its_sections():
    a = load_preset("digits-mlp")
    b = load_preset("digits-mlp", ["influence.depth=10"])
    assert a.section_hash("data", "model", "train") == b.section_hash("data", "model", "train")
    assert a.section_hash("influence") != b.section_hash("influence")
    assert a.section_hash() != b.section_hash()
