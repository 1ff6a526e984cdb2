"""A sweep end to end without Prefect: what is shared between points, a rerun that computes
nothing, an extension that computes only the new point, a damaged sibling that is not reused,
and a table that says what each point's own run says (smoke scale, about 40 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrf.study.sweeps import resolve_sweep
from tasks.reports.results import Results
from tasks.sweeps.collect import OUTPUTS, collect, read_sweep_table
from tasks.sweeps.points import plan_sweep, point_dir, run_sweep_points, write_sweep

pytestmark = pytest.mark.slow  # smoke sweeps end to end

# warm and proximal only: cheap, and damping reaches the proximal, influence and later nodes
VARIANTS = {"retrain.variants": ["warm", "proximal"]}
DAMPING_NODES = {"retrain-proximal", "influence", "aggregate", "report"}
SHARED_NODES = {"prepare", "train_base", "select", "spectrum", "retrain-warm"}


def _plan(values: list[float]):
    spec = resolve_sweep("fig5-damping", "smoke", grid={"damping": values}, overrides=VARIANTS)
    return plan_sweep(spec)


def _run(root: Path, values: list[float]):
    sp = _plan(values)
    write_sweep(root, sp)
    results = run_sweep_points(root, sp)
    return sp, {(r.point, r.node): r for r in results}, collect(sp, root)


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sweep")


def test_points_share_what_damping_does_not_reach(sweep_root: Path) -> None:
    sp, res, collected = _run(sweep_root, [0.1, 0.001])
    assert sp.distinct_nodes() == len(SHARED_NODES) + 2 * len(DAMPING_NODES)
    first, second = "damping_0p1", "damping_0p001"
    assert {n for (p, n), r in res.items() if p == first} == SHARED_NODES | DAMPING_NODES
    assert all(r.state == "Completed" for (p, _), r in res.items() if p == first)
    for node in SHARED_NODES:
        r = res[(second, node)]
        assert (r.state, r.source) == ("Reused", first)
        for rel in sp.plans[second][node].outputs.values():  # the same bytes, linked
            a, b = point_dir(sweep_root, first) / rel, point_dir(sweep_root, second) / rel
            assert a.read_bytes() == b.read_bytes()
    assert {n for (p, n), r in res.items() if p == second and r.state == "Completed"} == (
        DAMPING_NODES
    )
    assert collected["state"] == "Completed"


def test_table_reports_each_points_own_aggregates(sweep_root: Path) -> None:
    sp = _plan([0.1, 0.001])
    table = read_sweep_table(sweep_root)
    for p in sp.points:
        own = Results.read(point_dir(sweep_root, p.id), p.config, sp.plans[p.id])
        rows = table[(table["point"] == p.id) & (table["quantity"] == "gap")]
        assert (
            rows.set_index("term")["estimate"].to_dict()
            == own.gaps.set_index("gap")["mean"].to_dict()
        )
        spear = table[(table["point"] == p.id) & (table["quantity"] == "spearman")]
        assert set(spear["term"]) == {"warm", "proximal"}
        assert (rows["value"] == p.values["damping"]).all()
    assert (sweep_root / OUTPUTS["figure"]).stat().st_size > 0
    assert "### Trends" in (sweep_root / OUTPUTS["report"]).read_text()


def test_rerun_computes_nothing_and_an_extra_value_computes_only_itself(
    sweep_root: Path,
) -> None:
    _, res, collected = _run(sweep_root, [0.1, 0.001])
    assert {r.state for r in res.values()} == {"Cached"} and collected["state"] == "Cached"
    _, res, collected = _run(sweep_root, [0.1, 0.01, 0.001])
    ran = {k for k, r in res.items() if r.state == "Completed"}
    assert ran == {("damping_0p01", n) for n in DAMPING_NODES}
    assert {res[("damping_0p01", n)].state for n in SHARED_NODES} == {"Reused"}
    assert collected["state"] == "Completed"  # the table gained a point
    assert list(dict.fromkeys(collected["table"]["point"])) == [
        "damping_0p1",
        "damping_0p01",
        "damping_0p001",
    ]


def test_a_damaged_sibling_is_recomputed_not_linked(sweep_root: Path) -> None:
    sp = _plan([0.1])
    theta = (
        point_dir(sweep_root, "damping_0p1")
        / sp.plans["damping_0p1"]["train_base"].outputs["theta_s"]
    )
    # a new point's inputs match the index entry, but the sibling's copy no longer does
    theta.unlink()
    theta.write_bytes(b"not a checkpoint")
    _, res, _ = _run(sweep_root, [0.0001])
    assert res[("damping_0p0001", "train_base")].state == "Completed"


def test_a_diverging_point_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    # lr = 1e8 makes base training non-finite in its first epoch (a known numerical failure)
    spec = resolve_sweep(
        "digits-mlp",
        "smoke",
        grid={"train.optimizer.lr": [0.1, 1e8]},
        overrides={"retrain.variants": ["warm"]},
    )
    sp = plan_sweep(spec)
    write_sweep(tmp_path, sp)
    res = {(r.point, r.node): r for r in run_sweep_points(tmp_path, sp)}
    bad = "lr_1e08"
    assert res[(bad, "train_base")].state == "Diverged"
    assert "non-finite" in res[(bad, "train_base")].message
    assert res[(bad, "aggregate")].state == "Skipped"
    assert res[(bad, "aggregate")].message == "train_base diverged"
    assert res[("lr_0p1", "aggregate")].state == "Completed"
    collected = collect(sp, tmp_path)
    assert set(collected["table"]["point"]) == {"lr_0p1"}
    assert "train_base diverged" in collected["unfinished"][bad]
    assert f"`{bad}`: train_base diverged" in (tmp_path / OUTPUTS["report"]).read_text()
    # a rerun neither retries the divergence nor rewrites the collected outputs
    again = {(r.point, r.node): r.state for r in run_sweep_points(tmp_path, sp)}
    assert again[(bad, "train_base")] == "Diverged" and "Completed" not in again.values()
    assert collect(sp, tmp_path)["state"] == "Cached"
    # `pbrf sweep --strict` fails on it, naming the point; a clean sweep passes
    from flows.cli.sweep import strict_problems

    results = run_sweep_points(tmp_path, sp)
    problems = strict_problems(results, collect(sp, tmp_path))
    assert problems is not None and problems.startswith(f"diverged: {bad}; no results: {bad}")
    table = collected["table"].assign(warnings=0)
    assert strict_problems([], {"table": table, "unfinished": {}}) is None
