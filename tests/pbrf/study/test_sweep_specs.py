"""Sweep presets and grids: the paper's Appendix E grids, valid point configs, named errors,
and the trend verdicts on constructed tables. No training (about 2 s)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pbrf.study.sweeps import SWEEPS, PointError, point_id, resolve_sweep
from tasks.registry import get_key
from tasks.sweeps.trends import trend_verdicts

# Appendix E.4 of the paper, copied by hand: the grids the paper scale must use
APPENDIX_E4 = {
    "fig5-width": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
    "fig5-depth": [1, 3, 5, 7, 9, 11, 13, 15],
    "fig5-epochs": [100, 500, 1000, 3000, 5000, 7000, 9000],
    "fig5-weight-decay": [0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001],
    "fig5-damping": [
        0.5,
        0.1,
        0.05,
        0.01,
        0.005,
        0.001,
        0.0005,
        0.0001,
        0.00005,
        0.00001,
        0.000005,
        0.000001,
    ],
    "fig5-fraction": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
}


@pytest.mark.parametrize("name", list(APPENDIX_E4))
def test_paper_scale_uses_the_appendix_grid_on_the_papers_study(name: str) -> None:
    spec = resolve_sweep(name, "paper")
    assert list(spec.axes[0].values) == APPENDIX_E4[name]
    cfg = spec.points()[0].config
    assert (cfg.data.name, cfg.data.fraction, cfg.model.depth, cfg.train.batch_size) == (
        "mnist",
        0.1,
        1 if name == "fig5-depth" else 2,
        128,
    )
    assert cfg.model.width == (16 if name == "fig5-width" else 1024)
    assert cfg.train.epochs == (100 if name == "fig5-epochs" else 1000)


@pytest.mark.parametrize("name", list(SWEEPS))
def test_every_point_of_every_scale_is_a_valid_config_with_its_value(name: str) -> None:
    for scale in SWEEPS[name].scales:
        spec = resolve_sweep(name, scale)
        points = spec.points()
        assert len({p.id for p in points}) == len(points) >= 3
        for p in points:
            dump = p.config.model_dump(mode="json")
            for key, value in p.values.items():
                assert get_key(dump, key) == value
            if name == "fig5-fraction":  # removal at 10–90 % needs independent draws
                assert p.config.select.draws == "independent"
            if name == "pbrf-horizon":  # the PBRF's epochs are the swept value, LiSSA fixed
                assert p.config.retrain.pbrf.horizon == "explicit"
        if name == "pbrf-horizon":
            lissa = {p.config.influence.solver.model_dump_json() for p in points}
            assert len(lissa) == 1


def test_grid_replaces_an_axis_adds_a_second_and_names_a_bad_point() -> None:
    spec = resolve_sweep("fig5-damping", "smoke", grid={"damping": [0.1, 0.01]})
    assert [p.id for p in spec.points()] == ["damping_0p1", "damping_0p01"]
    two = resolve_sweep(
        "fig5-damping", "smoke", grid={"damping": [0.1, 0.01], "model.width": [8, 16]}
    )
    assert [p.id for p in two.points()][:2] == ["damping_0p1__width_8", "damping_0p1__width_16"]
    with pytest.raises(ValueError, match="at most 2 axes"):
        resolve_sweep("fig5-damping", "smoke", grid={"model.width": [8], "train.epochs": [2]})
    with pytest.raises(PointError) as err:
        resolve_sweep("digits-mlp", "smoke", grid={"damping": [0.1, -1.0]}).points()
    assert err.value.point == "damping_-1" and "damping" in str(err.value.error)
    with pytest.raises(ValueError, match="give the same config"):
        resolve_sweep("digits-mlp", "smoke", grid={"train.epochs": [3, 3.0]}).points()
    with pytest.raises(ValueError, match="is a study preset, not a sweep"):
        resolve_sweep("digits-mlp", "smoke")
    assert point_id({"damping": 1e-6}) == "damping_1e-06"
    assert point_id({"train.epochs": 3, "retrain.pbrf.epochs": 9}) == (
        "train_epochs_3__retrain_pbrf_epochs_9"
    )


def _table(values: list[float], est: list[float], half: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "quantity": ["gap"] * len(values),
            "term": ["proximity"] * len(values),
            "value": values,
            "value2": [None] * len(values),
            "estimate": est,
            "low": [e - half for e in est],
            "high": [e + half for e in est],
        }
    )


@pytest.mark.parametrize(
    ("est", "half", "outcome"),
    [
        ([1.0, 2.0, 3.0, 4.0], 0.1, "appears"),  # rising, ends far apart
        ([1.0, 2.0, 3.0, 4.0], 5.0, "unresolved"),  # rising within the uncertainty
        ([4.0, 3.0, 2.0, 1.0], 0.1, "opposite"),  # clearly falling
        ([2.0, 3.0, 1.0, 2.0], 0.1, "absent"),  # ρ = −0.25 and equal ends: no trend
    ],
)
def test_trend_verdicts_on_constructed_tables(est, half, outcome) -> None:
    spec = resolve_sweep("fig5-damping", "smoke", grid={"damping": [1e-4, 1e-3, 1e-2, 1e-1]})
    table = _table([1e-4, 1e-3, 1e-2, 1e-1], est, half)
    verdicts = {v.term: v for v in trend_verdicts(spec, table, table["value"])}
    v = verdicts["proximity"]
    assert v.outcome == outcome, v.text
    assert v.rho is not None and not math.isnan(v.rho)


def test_peak_and_dip_verdicts_name_the_interior_extremum() -> None:
    spec = resolve_sweep("pbrf-horizon", "smoke")
    ratios = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    rows = []
    for quantity, term, est in (
        ("spearman", "pbrf", [0.1, 0.3, 0.6, 0.95, 0.7, 0.4]),
        ("pearson", "pbrf", [0.1, 0.3, 0.6, 0.95, 0.9, 0.99]),  # the top is at the edge
        ("gap", "solver", [0.02, 0.01, 0.005, 0.0002, 0.004, 0.01]),
    ):
        for r, e in zip(ratios, est, strict=True):
            row = {"quantity": quantity, "term": term, "estimate": e, "horizon_ratio": r}
            rows.append({**row, "low": e - 0.001, "high": e + 0.001, "value2": None})
    table = pd.DataFrame(rows)
    v = {x.term: x for x in trend_verdicts(spec, table, table["horizon_ratio"])}
    assert v["spearman:pbrf"].outcome == "interior peak" and "= 1 " in v["spearman:pbrf"].text
    assert v["pearson:pbrf"].outcome == "edge peak"
    assert v["solver"].outcome == "interior dip" and "= 1 " in v["solver"].text
    assert v["pearson:linearized_pbrf"].outcome == "too few"


def test_shared_removals_make_the_comparison_paired() -> None:
    """Removal-to-removal spread hides a change every removal shows: the ends' intervals
    overlap (unpaired: unresolved), but each removal's gap rises by 0.5 ± 0.1 (paired: appears);
    with different removal sets the comparison stays unpaired."""
    spec = resolve_sweep("fig5-damping", "smoke", grid={"damping": [1e-4, 1e-3, 1e-2, 1e-1]})
    table = _table([1e-4, 1e-3, 1e-2, 1e-1], [1.0, 1.2, 1.3, 1.5], 2.0)
    table["point"] = [p.id for p in spec.points()]
    base = [0.1, 1.0, 2.0, 3.0, 0.5, 1.5]  # wide spread over removals
    bump = [0.4, 0.5, 0.6, 0.5, 0.45, 0.55]
    per = pd.DataFrame(
        [
            {
                "point": pid,
                "term": "proximity",
                "removal_id": i,
                "distance": b + k * d / 3,
                "removals": "same",
            }
            for k, pid in enumerate(table["point"])
            for i, (b, d) in enumerate(zip(base, bump, strict=True))
        ]
    )

    def proximity(per_removal):
        verdicts = trend_verdicts(spec, table, table["value"], per_removal)
        return next(v for v in verdicts if v.term == "proximity")

    assert proximity(None).outcome == "unresolved"
    paired = proximity(per)
    assert paired.outcome == "appears" and "paired over the 6 shared removals" in paired.text
    per.loc[per["point"] == table["point"].iloc[-1], "removals"] = "other"
    assert proximity(per).outcome == "unresolved"
