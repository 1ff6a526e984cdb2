"""Reuse is exact: a step reads only the config keys it declares, a node's code is what it runs,
and every reader checks the bytes of what it reads against the producer's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pipeline_fixtures import run_study, smoke_config

from pbrf.study.presets import load_preset
from tasks.engine import manifest
from tasks.engine.artifacts import CorruptArtifactError
from tasks.engine.codehash import ROOT, code_files
from tasks.engine.config_view import ConfigView, UndeclaredConfigRead
from tasks.engine.dvcgen import dvc_config
from tasks.engine.plan import Plan, build_plan
from tasks.reports.results import Results

# ----------------------------------------------------------------------------- declared reads


def test_view_allows_declared_keys_and_refuses_the_rest() -> None:
    cfg = smoke_config()
    view = ConfigView(cfg, ("influence.solver.depth", "train", "loss"), "demo")
    assert view.influence.solver.depth == cfg.influence.solver.depth
    assert view.train is cfg.train  # a declared section is the config object itself
    assert view.device == cfg.device  # ambient: placement, recorded in the environment
    assert view.loss_name("cross_entropy") == cfg.loss_name("cross_entropy")  # reads `loss`
    with pytest.raises(UndeclaredConfigRead, match=r"'influence.solver.scale'"):
        _ = view.influence.solver.scale
    with pytest.raises(UndeclaredConfigRead, match=r"'damping'"):
        _ = view.damping
    with pytest.raises(UndeclaredConfigRead, match=r"'model_dump'"):
        view.model_dump()
    with pytest.raises(AttributeError):  # a key that does not exist stays an AttributeError
        _ = view.influence.solver.no_such_key
    with pytest.raises(UndeclaredConfigRead, match=r"'loss'"):
        ConfigView(cfg, ("train",), "demo").loss_name()


def test_view_of_a_mapping_checks_each_value() -> None:
    cfg = smoke_config(grade__estimators="cg,grad_dot", train__checkpoints=2)
    view = ConfigView(cfg, ("grade.estimators.cg",), "estimate")
    assert list(view.grade.estimators) == ["cg", "grad_dot"]  # the keys are structure
    assert view.grade.estimators["cg"].name == "cg"
    with pytest.raises(UndeclaredConfigRead, match=r"'grade.estimators.grad_dot'"):
        _ = view.grade.estimators["grad_dot"]


def _leaves(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict) and d:
        return [kv for k, v in d.items() for kv in _leaves(v, f"{prefix}{k}.")]
    return [(prefix[:-1], d)]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "-changed"
    if value is None:
        return 7
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    return {"changed": 1}


def _set(d: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(d))
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
    return out


def _covered(key: str, reads: tuple[str, ...]) -> bool:
    return any(key == r or key.startswith(r + ".") or r.startswith(key + ".") for r in reads)


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("digits-mlp", {}),
        ("cancer-lr", {}),
        ("digits-mlp", {"grade.estimators": "cg,tracin", "train.checkpoints": 2}),
        ("digits-mislabel", {}),
    ],
)
def test_changing_a_key_restamps_exactly_the_nodes_that_read_it(preset, overrides) -> None:
    """Every leaf of the config in turn: a node is re-stamped iff it declares the key or a node
    upstream of it was re-stamped; the DVC stage of each node lists exactly its reads."""
    base = load_preset(preset, overrides, "smoke").model_dump(mode="json")
    plan = build_plan(base)
    for node, stage in zip(
        plan, dvc_config(load_preset(preset, overrides, "smoke"))["stages"].values(), strict=True
    ):
        assert stage.get("params", []) == list(node.reads), node.id
    for key, value in _leaves(base):
        try:
            other = build_plan(_set(base, key, _changed(value)))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # the changed value does not describe a plan (e.g. an unknown solver name)
        changed: set[str] = set()
        for node in plan:
            if node.id not in other.nodes:
                continue
            new = other[node.id]
            if new.reads != node.reads or new.upstream != node.upstream:
                changed.add(node.id) if new.stamp != node.stamp else None
                continue  # the key changes what the node reads (structural)
            expect = _covered(key, node.reads) or any(u in changed for u in node.upstream)
            assert (new.stamp != node.stamp) == expect, (key, node.id)
            if expect:
                changed.add(node.id)


def test_eval_dtype_restamps_influence_and_what_uses_its_predictions() -> None:
    cfg = load_preset("cancer-lr", {}, "smoke").model_dump(mode="json")
    a = build_plan(cfg)
    b = build_plan(_set(cfg, "eval_dtype", "float32"))
    moved = {n.id for n in a if n.stamp != b[n.id].stamp}
    assert {"influence", "aggregate", "report"} <= moved
    assert not moved & {"prepare", "train_base", "select", "retrain-cold", "retrain-warm"}


# ----------------------------------------------------------------------------- code closures


def _files(plan: Plan, node_id: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in code_files(plan[node_id].code)}


def test_code_closures_hold_what_a_node_runs_and_nothing_it_never_runs() -> None:
    cfg = load_preset(
        "digits-mlp", {"grade.estimators": "trak,ekfac,cg", "train.checkpoints": 2}, "smoke"
    )
    plan = build_plan(cfg.model_dump(mode="json"))
    # modules loaded by name belong to the node that loads them, and only to it
    assert "pbrf/estimators/trak.py" in _files(plan, "estimate-trak")
    assert "pbrf/estimators/ekfac.py" in _files(plan, "estimate-ekfac")
    assert "pbrf/estimators/trak.py" not in _files(plan, "estimate-ekfac")
    solvers = {"pbrf/solvers/lissa.py", "pbrf/solvers/cg.py", "pbrf/solvers/exact.py"}
    study = {"pbrf/study/config.py", "pbrf/study/grading.py", "pbrf/estimators/registry.py"}
    assert not _files(plan, "prepare") & (solvers | study)
    for node in plan.of_step("retrain"):
        files = _files(plan, node.id)
        assert not files & (solvers | study), node.id
        assert not any(
            f.startswith("pbrf/estimators/") and "base" not in f and "__init__" not in f
            for f in files
        )
    assert "pbrf/solvers/lissa.py" in _files(plan, "influence")
    # the engine decides what runs, not what a step computes
    assert not any(
        f.startswith("tasks/engine/") or f == "tasks/registry.py"
        for n in plan
        for f in _files(plan, n.id)
    )


@pytest.mark.parametrize(
    "edited,stale",
    [
        ("pbrf/estimators/trak.py", {"estimate-trak"}),
        ("pbrf/solvers/lissa.py", {"spectrum", "influence"}),
        ("pbrf/objectives.py", None),  # every training node; checked below
    ],
)
def test_editing_one_file_makes_exactly_its_users_stale(
    edited: str, stale: set[str] | None
) -> None:
    cfg = load_preset(
        "digits-mlp", {"grade.estimators": "trak,grad_dot", "train.checkpoints": 2}, "smoke"
    )
    plan = build_plan(cfg.model_dump(mode="json"))
    users = {n.id for n in plan if edited in _files(plan, n.id)}
    if stale is None:
        assert {n.id for n in plan.of_step("retrain")} <= users
        assert "prepare" not in users and "select" not in users
    else:
        assert users == stale


# ----------------------------------------------------------------------------- verified reads


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Plan]:
    root = tmp_path_factory.mktemp("run")
    cfg = smoke_config(retrain__variants=["cold", "warm"])
    run_study(root, cfg)
    return root, cfg, build_plan(cfg.model_dump(mode="json"))


def _flip_one_value(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    sd = payload["state_dict"]
    name = next(iter(sd))
    sd[name].view(-1)[0] += 1e-3
    torch.save(payload, path)


@pytest.mark.slow
def test_a_changed_input_is_refused_by_every_reader(finished, tmp_path: Path) -> None:
    import shutil

    src, cfg, plan = finished
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    delta = root / plan["influence"].outputs["influence_delta"]
    _flip_one_value(delta)  # still a valid checkpoint: only the manifest knows
    from tasks.engine.preflight import check_inputs

    with pytest.raises(CorruptArtifactError, match=r"influence/delta.pt.*content changed"):
        check_inputs(root, plan, plan["aggregate"])
    with pytest.raises(CorruptArtifactError, match=r"Rerun step 'influence'"):
        from tasks.engine.runner import run_node

        run_node(root, cfg, "aggregate", plan=plan, force=True)
    # a report reader: one data byte of the gaps table
    gaps = root / plan["aggregate"].outputs["gaps"]
    data = bytearray(gaps.read_bytes())
    data[len(data) // 3] ^= 0x01
    gaps.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"gaps.parquet"):
        Results.read(root, cfg, plan)
    assert manifest.status(root, plan["aggregate"]).current is False


def test_the_manifest_records_the_code_a_node_started_with(tmp_path: Path, monkeypatch) -> None:
    """Code edited while a step runs is not recorded as the code that made its outputs: the
    key is taken when the node starts, so the next run recomputes the node."""
    from tasks.engine import runner
    from tasks.engine.plan import build_plan

    cfg = smoke_config()
    plan = build_plan(cfg.model_dump(mode="json"))
    version = {"code": "as started"}
    monkeypatch.setattr(manifest, "modules_hash", lambda modules: version["code"])
    real = runner.step_function

    def editing_while_running(step: str):
        def run(ctx):
            version["code"] = "edited during the run"
            real(step)(ctx)

        return run

    monkeypatch.setattr(runner, "step_function", editing_while_running)
    assert runner.run_node(tmp_path, cfg, "prepare", plan=plan).state == "Completed"
    monkeypatch.setattr(runner, "step_function", real)
    version["code"] = "as started"
    assert manifest.status(tmp_path, plan["prepare"]).current  # recorded: the starting code
    version["code"] = "edited during the run"
    state = manifest.status(tmp_path, plan["prepare"])
    assert not state.current and "code" in state.reason
