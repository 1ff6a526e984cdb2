"""Run records and drift rules (tasks/reports/history.py), interval rounding, inlined figures."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tasks.reports import history
from tasks.reports.results import interval_decimals


def _record(time: str, *, mean: float = 0.10, code: str = "c1", checked: bool = True) -> dict:
    return {
        "version": history.RECORD_VERSION,
        "series": "digits-mlp-smoke",
        "run_name": f"run-{time}",
        "run_id": f"id-{time}",
        "time": time,
        "code": {"hash": code, "git": None},
        "config": {"damping": 0.001, "train": {"epochs": 3}},
        "env": {"threads": 1},
        "checked": checked,
        "tables": {
            "gaps": [{"gap": "warm_start", "mean": mean, "low": 0.08, "high": 0.12}],
            "correlations": [
                {
                    "reference": "cold",
                    "pearson": 0.95,
                    "pearson_low": None,
                    "pearson_high": None,
                    "spearman": 1.0,
                    "spearman_low": 1.0,
                    "spearman_high": 1.0,
                }
            ],
        },
    }


def _moved(prev: dict, cur: dict) -> list[str]:
    t = history.compare(prev, cur)
    return t[t["moved"]]["metric"].tolist()


def test_a_number_drifts_only_outside_the_previous_interval() -> None:
    prev = _record("2026-01-01")
    assert _moved(prev, _record("2026-01-02", mean=0.119)) == []
    assert _moved(prev, _record("2026-01-02", mean=0.121)) == ["gap warm_start"]
    cur = _record("2026-01-02")
    cur["tables"]["correlations"][0]["pearson"] = 0.9500001  # no interval: any change moves
    cur["tables"]["correlations"][0]["spearman"] = 0.9  # outside a zero-width interval
    assert _moved(prev, cur) == ["pearson cold", "spearman cold"]
    cur["tables"]["correlations"][0]["pearson"] = None  # a number that disappears moved
    assert "pearson cold" in _moved(prev, cur)


def test_previous_is_the_last_checked_run_of_the_same_series_and_code(tmp_path: Path) -> None:
    for rec in (
        _record("2026-01-01T00"),
        _record("2026-01-02T00", code="other"),
        _record("2026-01-03T00", checked=False),  # run by hand in between
    ):
        history.write_record(tmp_path, rec)
    cur = _record("2026-01-04T00")
    assert history.previous(tmp_path, cur)["run_name"] == "run-2026-01-01T00"
    by_hand = _record("2026-01-04T00", checked=False)
    assert history.previous(tmp_path, by_hand)["run_name"] == "run-2026-01-03T00"
    assert history.previous(tmp_path, _record("2026-01-04T00", code="new")) is None
    assert len(history.read_records(tmp_path, "digits-mlp-smoke")) == 3


def test_config_and_environment_changes_are_named() -> None:
    prev = _record("2026-01-01")
    cur = copy.deepcopy(prev)
    cur["config"]["train"]["epochs"] = 4
    cur["env"]["threads"] = 2
    assert history.config_changes(prev, cur) == [
        "config.train.epochs: 3 → 4",
        "env.threads: 1 → 2",
    ]


def test_code_version_hashes_the_steps_code() -> None:
    code = history.code_version()
    assert len(code["hash"]) == 12 and int(code["hash"], 16) >= 0


@pytest.mark.parametrize(
    ("low", "high", "value", "decimals"),
    [
        (0.0036, 0.0056, 0.0045, 4),  # width 0.002 → two significant digits of it
        (-1.0, 1.0, 0.2, 1),
        (0.145, 0.209, 0.186, 3),
        (None, None, 0.00000274, 8),  # no interval: three significant digits
        (0.954101, 0.954101 + 1e-16, 0.954101, 6),  # zero-width: at most six
        (None, None, None, 3),
    ],
)
def test_interval_decimals(low: Any, high: Any, value: Any, decimals: int) -> None:
    assert interval_decimals(low, high, value) == decimals


def test_figures_are_inlined_for_the_ui(tmp_path: Path) -> None:
    from flows.publish import embed_figures

    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    md = "![a](figure.png) and ![b](missing.png) and ![c](https://x/y.png)"
    out = embed_figures(md, tmp_path)
    assert out.startswith("![a](data:image/png;base64,iVBORw0KGgo=)")
    assert "![b](missing.png)" in out and "![c](https://x/y.png)" in out
