"""The Prefect flow end to end under ``prefect_test_harness``: results, cache, invalidation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_fixtures import tiny_overrides, tiny_set_args

from flows.cli import main
from flows.decomposition import DecompositionParams, decomposition
from tasks import fingerprint
from tasks.layout import RunLayout

prefect_testing = pytest.importorskip("prefect.testing.utilities")

FANNED = [f"retrain[{v}]" for v in ("cold", "warm", "proximal", "pbrf", "linearized_pbrf")]
ALL = ["prepare", "train_base", "select", *FANNED, "influence", "aggregate", "report"]


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_testing.prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow") / "tiny"


def _run(out: Path, **overrides) -> dict[str, str]:
    params = DecompositionParams(
        preset="digits-mlp", overrides=tiny_overrides(**overrides), out=str(out)
    )
    result = decomposition(params)
    assert result["out"] == str(out)
    return {step: info["state"] for step, info in result["steps"].items()}


def _states(states: dict[str, str], state: str) -> set[str]:
    return {s for s, v in states.items() if v == state}


def test_flow_runs_every_step_and_publishes_tables(harness: None, out: Path) -> None:
    states = _run(out)
    assert list(states) == ALL and set(states.values()) == {"Completed"}
    layout = RunLayout(out)
    assert layout.report_md.is_file() and layout.config.is_file()
    assert any(layout.prefect_results.iterdir())  # persisted results live with the run
    from prefect.artifacts import Artifact

    table5 = Artifact.get("digits-mlp-table5-gaps")
    assert table5 is not None and "warm_start" in str(table5.data)
    assert Artifact.get("digits-mlp-table2-correlations") is not None
    report = Artifact.get("digits-mlp-report")
    assert report is not None and "Table 5" in str(report.data)


def test_rerun_reports_every_step_cached(harness: None, out: Path) -> None:
    _run(out)
    assert set(_run(out).values()) == {"Cached"}


def test_config_change_reruns_only_affected_steps(harness: None, out: Path) -> None:
    _run(out)
    states = _run(out, influence__depth=25)
    assert _states(states, "Completed") == {"influence", "aggregate", "report"}
    states = _run(out, influence__depth=25, retrain__pbrf_lr_factor=0.5)
    assert _states(states, "Completed") == {*FANNED, "aggregate", "report"}


def test_library_source_change_reruns_everything(harness: None, out: Path, monkeypatch) -> None:
    _run(out)
    real = fingerprint.code_hash
    monkeypatch.setattr(fingerprint, "code_hash", lambda roots=None: "edited-" + real(roots))
    assert set(_run(out).values()) == {"Completed"}
    monkeypatch.undo()  # the original code: its records are valid again (same artifact bytes)
    assert set(_run(out).values()) == {"Cached"}


def test_deleted_or_foreign_artifacts_are_recomputed(harness: None, out: Path) -> None:
    layout = RunLayout(out)
    _run(out)
    layout.variant_params("warm").unlink()
    states = _run(out)
    assert _states(states, "Completed") == {"retrain[warm]"}  # same bytes: downstream cached
    assert layout.variant_params("warm").is_file()
    # another config overwrites influence/; going back must recompute it, not trust the old record
    _run(out, influence__depth=25)
    states = _run(out)
    assert _states(states, "Completed") == {"influence", "aggregate", "report"}


def test_cli_run_prints_the_summary(
    harness: None, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "digits-mlp", *tiny_set_args(), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("retrain[linearized_pbrf]", "gap (Table 5)", "Non-Convergence", "pearson"):
        assert needle in text
    assert "horizons: LiSSA T/σ" in text and "wall time" in text
