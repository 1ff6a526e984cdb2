"""Every preset's ``smoke`` scale end to end on files in the published formats, each report showing
the paper's row, and ``pbrf report --compare`` across the finished runs.

The file-based data sets are small synthetic files written by ``tests/data_writers.py`` into a
temporary ``data.root`` (the bundled sets need none): these runs exercise the pipeline — prepare
→ base → select → curvature → seven retraining variants → influence → aggregate → report — not the
paper's science. The paper's values are read here from ``tasks/reports/paper_values.csv`` with the
standard ``csv`` module, independently of ``tasks.reports.paper``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from data_writers import write_study_files
from pipeline_fixtures import run_study
from repo_root import REPO

from flows.cli import main
from pbrf.data import get_spec
from pbrf.study.appendix import STUDY_PRESETS
from pbrf.study.config import StudyConfig
from pbrf.study.presets import PRESETS, load_preset
from tasks.reports.paper import paper_row
from tasks.reports.results import GAP_TITLES

GAPS = ("warm_start", "proximity", "non_convergence", "linearization", "solver")
# the paper's PBRF was trained for K/2 epochs at lr/10: its gaps after Proximity and its PBRF
# correlations pair with the paper-setting variants; the matched PBRF's have no paper value
LIKE = {g: g if g in GAPS[:2] else f"{g}_paper" for g in GAPS}
ALL_GAPS = (*GAPS, *(LIKE[g] for g in GAPS[2:]))


def expected_gaps(cfg: StudyConfig) -> tuple[str, ...]:
    """The paper rows train both paper-setting PBRFs; digits-mlp and diabetes-mlp (this
    project's stand-ins) only pbrf_paper, so only its Non-Convergence has a like."""
    full = "linearized_pbrf_paper" in cfg.retrain.variants
    return ALL_GAPS if full else (*GAPS, "non_convergence_paper")


TITLES = {"cold": "Cold-Start (LOO)", "warm": "Warm-Start", "pbrf_paper": "PBRF (paper setting)"}
PAPER_COLUMN = {"cold": "cold", "warm": "warm", "pbrf_paper": "pbrf"}
Run = tuple[Path, StudyConfig]


def _paper_csv() -> list[dict[str, str]]:
    with (REPO / "tasks" / "reports" / "paper_values.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


PAPER = _paper_csv()


def paper_value(table: str, model: str, dataset: str, column: str, statistic: str) -> float:
    (row,) = [
        r
        for r in PAPER
        if (r["table"], r["model"], r["dataset"], r["column"], r["statistic"])
        == (table, model, dataset, column, statistic)
    ]
    return float(row["value"])


def correlation_table(model: str, dataset: str) -> str | None:
    """Table 2 when it holds the row, else Table 6 (what the report shows), else None."""
    for table in ("2", "6"):
        if any(
            r["table"] == table and (r["model"], r["dataset"]) == (model, dataset) for r in PAPER
        ):
            return table
    return None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study_files(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Callable[[str], Run]:
    """Run a preset's smoke scale once per module (on the written files) and return it."""
    base = tmp_path_factory.mktemp("runs")
    done: dict[str, Run] = {}

    def run(name: str) -> Run:
        if name not in done:
            cfg = load_preset(name, {"data.root": str(data_root)}, "smoke")
            results = run_study(base / name, cfg)
            assert {r.state for r in results.values()} == {"Completed"}, name
            done[name] = (base / name, cfg)
        return done[name]

    return run


# the rows of Tables 5 and 2 (the appendix studies' presets run a cut decomposition and are
# tested with their studies)
ROW_PRESETS = [name for name in PRESETS if name not in STUDY_PRESETS]


@pytest.mark.slow
@pytest.mark.parametrize("name", ROW_PRESETS)
def test_smoke_scale_runs_end_to_end_and_the_report_shows_the_papers_row(
    name: str, smoke_run: Callable[[str], Run]
) -> None:
    path, cfg = smoke_run(name)
    model, dataset = PRESETS[name].paper_row
    assert paper_row(cfg)[:2] == (model, dataset)  # the report shows the row the preset claims
    report = (path / "report" / "report.md").read_text(encoding="utf-8")
    assert f"Ours: {cfg.model.name} on {cfg.data.name}, output scale " in report
    assert f"; paper: {model} on {dataset} (Table 5)." in report
    lines = report.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("Ours: "))
    table5 = lines[start : start + len(GAPS) + 4]
    assert "ours, paper setting" in table5[2] and "ours, matched PBRF (added)" in table5[2]
    for g in GAPS:  # Table 5 transposed: one row per gap, ours then the paper's
        paper = (
            f"{paper_value('5', model, dataset, g, 'mean'):.3f} ± "
            f"{paper_value('5', model, dataset, g, 'std'):.3f}"
        )
        (row,) = [x for x in table5 if x.startswith(f"| {GAP_TITLES[g]} | ")]
        assert row.endswith(f" | {paper} |"), row
    table = correlation_table(model, dataset)
    if table is not None:
        assert f"paper P / S (Table {table}) |" in report
        for ref, title in TITLES.items():
            p = paper_value(table, model, dataset, PAPER_COLUMN[ref], "pearson")
            s = paper_value(table, model, dataset, PAPER_COLUMN[ref], "spearman")
            (line,) = [x for x in report.splitlines() if x.startswith(f"| {title} *")]
            assert line.endswith(f" {p:.2f} / {s:.2f} |"), line
        (line,) = [x for x in report.splitlines() if x.startswith("| PBRF *")]
        assert line.endswith(" — |"), line  # the matched PBRF is this project's row
    gaps = pd.read_parquet(path / "aggregate" / "gaps.parquet")
    assert list(gaps["gap"]) == list(expected_gaps(cfg))
    assert all(math.isfinite(v) and v >= 0 for v in gaps["mean"])
    assert (path / "report" / "figure4_gaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compare_assembles_tables_findings_and_figure_across_runs(
    smoke_run: Callable[[str], Run], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {name: smoke_run(name)[0] for name in ROW_PRESETS}
    out = tmp_path / "compare"
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    argv = ["report", "--compare", *map(str, runs.values()), str(not_a_run), "--out", str(out)]
    assert main(argv) == 0
    assert f"skipped {not_a_run}: not a finished run" in capsys.readouterr().err
    t5 = pd.read_csv(out / "table5.csv")
    t2 = pd.read_csv(out / "table2.csv")
    findings = pd.read_csv(out / "findings.csv", keep_default_na=False)
    text = (out / "comparison.md").read_text(encoding="utf-8")
    for name, path in runs.items():
        model, dataset = PRESETS[name].paper_row
        ours = pd.read_parquet(path / "aggregate" / "gaps.parquet").set_index("gap")
        got = t5[t5["run"] == name].set_index("gap")
        cfg = smoke_run(name)[1]
        assert list(got.index) == list(expected_gaps(cfg))
        for g in expected_gaps(cfg):  # ours as the run's aggregate wrote them
            for col in ("mean", "std", "ci_low", "ci_high"):
                assert got.loc[g, col] == pytest.approx(ours.loc[g, col], rel=1e-12, abs=1e-15)
        for g in GAPS:  # the paper's from the CSV beside the paper-setting gap, never the matched
            if LIKE[g] not in got.index:
                continue
            assert got.loc[LIKE[g], "paper_mean"] == paper_value("5", model, dataset, g, "mean")
            if LIKE[g] != g:
                assert math.isnan(got.loc[g, "paper_mean"]) and got.loc[g, "setting"] == "matched"
        corr = pd.read_parquet(path / "aggregate" / "correlations.parquet").set_index("reference")
        rows = t2[t2["run"] == name].set_index("reference")
        assert list(rows.index) == [*TITLES, "pbrf"]
        table = correlation_table(model, dataset)
        for ref in [*TITLES, "pbrf"]:
            for col in ("pearson", "pearson_low", "spearman_high"):
                assert rows.loc[ref, col] == pytest.approx(
                    corr.loc[ref, col], rel=1e-12, nan_ok=True
                )
            if table is not None and ref in PAPER_COLUMN:
                want = paper_value(table, model, dataset, PAPER_COLUMN[ref], "spearman")
                assert rows.loc[ref, "paper_spearman"] == want
            elif table is not None:
                assert math.isnan(rows.loc[ref, "paper_spearman"])
        # the first three gaps' share of the five, unless all five are negligible (< 1 % of the
        # output scale, as the LR rows are)
        assert f"| {name} | " in text
        (f,) = findings[findings["run"] == name].itertuples(index=False)
        if len(expected_gaps(cfg)) < len(ALL_GAPS):  # no full like: no share to compare
            assert f.share == "" and f.dominates == "n/a"
            continue
        means = ours["mean"][[LIKE[g] for g in GAPS]]  # through the paper-setting PBRF
        share = means.iloc[:3].sum() / means.sum()
        scale = float(ours["output_scale"].iloc[0])
        if means.sum() > 0.01 * scale:
            assert float(f.share) == pytest.approx(share, rel=1e-12)
            assert f.dominates == ("yes" if share >= 0.9 else "no")
        else:
            assert f.share == "" and f.dominates == "n/a"
    # every paper-setting gap cell carries the paper's value
    assert text.count("<br>paper ") >= 5 * sum(
        len(expected_gaps(smoke_run(n)[1])) == 8 for n in runs
    )
    assert (out / "figure4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_without_a_finished_run_exits_1_naming_the_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--compare", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "no finished run" in err[0] and str(tmp_path / "nothing") in err[0]
    assert main(["report"]) == 2
    assert main(["report", str(tmp_path), "--compare", str(tmp_path)]) == 2


FILE_PRESETS = {  # one preset per file-based data set
    "pima_diabetes": "diabetes-lr",
    "concrete": "concrete-mlp",
    "energy": "energy-mlp",
    "mnist": "mnist-lenet",
    "fashion_mnist": "fmnist-mlp",
    "cifar10": "cifar10-resnet20",
    "ptb": "ptb-transformer",
}


@pytest.mark.parametrize(("data", "preset"), list(FILE_PRESETS.items()))
def test_missing_files_stop_a_preset_naming_every_file(
    data: str, preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Offline, without the real files, a preset never falls back to other data."""
    empty = tmp_path / "empty"
    empty.mkdir()
    params = tmp_path / "params.yaml"
    argv = ["params", preset, "--scale", "paper", "--set", f"data.root={empty}", "-o", str(params)]
    assert main(argv) == 0
    out = tmp_path / "artifacts"
    assert main(["step", "prepare", "--params", str(params), "--out", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    for f in get_spec(data).files:
        assert str(empty / f) in err[0]
    assert f"pbrf data fetch {data}" in err[0]
    assert not (out / "prepare" / "dataset.pt").exists()
