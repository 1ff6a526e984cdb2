"""One registry: every derived fact — nodes, stamps, edges, code closures, dvc.yaml — follows it."""

from __future__ import annotations

import inspect

import pytest
import yaml
from pipeline_fixtures import smoke_config
from repo_root import REPO

from pbrf.study.presets import PRESETS, load_preset
from tasks.engine.codehash import ROOT, code_files
from tasks.engine.dvcgen import dvc_yaml
from tasks.engine.plan import build_plan
from tasks.engine.runner import step_function
from tasks.registry import STEPS, producer


def _plan(cfg):
    return build_plan(cfg.model_dump(mode="json"))


def _changed(a, b) -> set[str]:
    pa, pb = _plan(a), _plan(b)
    assert list(pa.nodes) == list(pb.nodes)
    return {n for n in pa.nodes if pa[n].stamp != pb[n].stamp}


def test_every_step_is_a_function_of_its_context_and_every_input_has_a_producer():
    outputs: dict[str, str] = {}
    for step in STEPS.values():
        fn = step_function(step.name)
        assert list(inspect.signature(fn).parameters) == ["ctx"], step.name
        for name in step.outputs:
            assert name not in outputs, f"{name} produced by {outputs.get(name)} and {step.name}"
            outputs[name] = step.name
    for step in STEPS.values():
        inputs = step.inputs if not callable(step.inputs) else ()
        for artifact in inputs:
            assert producer(artifact).name != step.name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_plans_a_connected_dag(name):
    plan = _plan(load_preset(name, scale="smoke"))
    seen: set[str] = set()
    for node in plan:
        assert set(node.upstream) <= seen, f"{node.id} waits for a later node"
        seen.add(node.id)
    assert plan.of_step("report") and plan.of_step("aggregate")


def test_edges_are_exactly_the_producers_of_each_nodes_inputs():
    plan = _plan(smoke_config())
    for node in plan:
        producers = {key.split("[", 1)[1][:-1] for key in node.inputs}
        assert set(node.upstream) == producers, node.id
    up = {n.id: set(n.upstream) for n in plan}
    assert "spectrum" in up["retrain-pbrf"] and "spectrum" in up["influence"]
    assert "spectrum" not in up["retrain-warm"] and "spectrum" not in up["retrain-pbrf_paper"]
    assert up["report"] == {"aggregate", "influence"}


def test_scale_by_grid_takes_sigma_from_the_influence_node_not_the_spectrum():
    """``influence.solver.scale=grid``: the influence node chooses σ (Appendix E.3), so the
    matched PBRFs wait for its ``solver`` table and no spectrum node is planned."""
    plan = _plan(smoke_config(influence__solver__scale="grid"))
    up = {n.id: set(n.upstream) for n in plan}
    assert "spectrum" not in up and "spectrum" not in up["influence"]
    assert "influence" in up["retrain-pbrf"] and "influence" in up["retrain-linearized_pbrf"]
    assert "influence" not in up["retrain-warm"] and "influence" not in up["retrain-pbrf_paper"]
    assert any(k.startswith("solver[") for k in plan["retrain-pbrf"].inputs)
    fixed = _plan(smoke_config(influence__solver__scale=30.0))
    assert "influence" not in {u for n in fixed for u in n.upstream if n.id == "retrain-pbrf"}


def test_damping_restamps_only_the_nodes_that_read_it():
    changed = _changed(smoke_config(), smoke_config(damping=0.01))
    assert changed == {
        "retrain-proximal",
        "retrain-pbrf",
        "retrain-linearized_pbrf",
        "retrain-pbrf_paper",
        "influence",
        "aggregate",
        "report",
    }


def test_solver_seed_does_not_reselect_test_points_and_names_reach_only_the_tables():
    base = smoke_config(influence__solver__batch_size=50)
    changed = _changed(
        base, smoke_config(influence__solver__batch_size=50, influence__solver__seed=7)
    )
    assert changed == {"influence", "aggregate", "report"}
    assert _changed(smoke_config(), smoke_config(name="renamed")) == {"aggregate", "report"}
    changed = _changed(smoke_config(), smoke_config(select__seed=3))
    assert "select" in changed and "train_base" not in changed and "spectrum" not in changed


def test_lissa_depth_moves_the_matched_pbrf_but_not_the_paper_setting():
    changed = _changed(smoke_config(), smoke_config(influence__solver__depth=40))
    assert {"retrain-pbrf", "retrain-linearized_pbrf", "influence"} <= changed
    assert "retrain-pbrf_paper" not in changed and "retrain-cold" not in changed


def test_code_closures_are_per_step():
    rel = lambda fn: {p.relative_to(ROOT).as_posix() for p in code_files((fn.split(":")[0],))}  # noqa: E731
    report = rel(STEPS["report"].function)
    retrain = rel(STEPS["retrain"].function)
    assert "tasks/reports/report.py" in report and "pbrf/objectives.py" not in report
    assert {"tasks/steps/retrain.py", "pbrf/objectives.py", "pbrf/trainer.py"} <= retrain
    assert "tasks/reports/report.py" not in retrain


def test_committed_dvc_yaml_is_generated_from_the_registry_and_params_yaml():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    from pbrf.study.config import StudyConfig

    expected = dvc_yaml(StudyConfig.model_validate(params))
    assert (REPO / "dvc.yaml").read_text() == expected, "run `pbrf dvc` to regenerate dvc.yaml"


def test_dvc_stage_edges_equal_the_plan_edges():
    """The DAG DVC sees (a stage depends on the stages whose outs it lists) is the plan's."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    from pbrf.study.config import StudyConfig

    cfg = StudyConfig.model_validate(params)
    stages = yaml.safe_load(dvc_yaml(cfg))["stages"]
    owner = {}
    for name, stage in stages.items():
        for out in stage["outs"]:
            owner[out] = name
        for metric in stage.get("metrics", []):
            owner[next(iter(metric))] = name
    plan = _plan(cfg)
    for name, stage in stages.items():
        upstream = {owner[d] for d in stage["deps"] if d in owner}
        assert upstream == set(plan[name].upstream), name
        assert stage.get("params", []) == list(plan[name].reads), name


def test_a_file_based_data_set_is_a_dependency_of_prepare_only():
    """Replacing MNIST's files reruns `prepare` under DVC; the bundled default has no data deps."""
    from pbrf.study.presets import load_preset

    stages = yaml.safe_load(dvc_yaml(load_preset("mnist-mlp", {"data.root": "data"}, "smoke")))
    stages = stages["stages"]
    data = [d for d in stages["prepare"]["deps"] if d.startswith("data/")]
    assert sorted(data) == [
        "data/MNIST/raw/t10k-images-idx3-ubyte",
        "data/MNIST/raw/t10k-labels-idx1-ubyte",
        "data/MNIST/raw/train-images-idx3-ubyte",
        "data/MNIST/raw/train-labels-idx1-ubyte",
    ]
    assert not [
        d
        for s in stages.values()
        if s is not stages["prepare"]
        for d in s["deps"]
        if d.startswith("data/")
    ]
    default = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["prepare"]["deps"]
    assert not [d for d in default if d.startswith("data/")]


def test_the_registry_knows_the_librarys_variants():
    """tasks/registry.py stays torch-free, so it lists the variants itself: the same list."""
    from pbrf.study.config import VARIANTS as LIBRARY
    from tasks.registry import VARIANTS as REGISTRY

    assert REGISTRY == LIBRARY


def test_a_node_marked_free_of_forward_mode_ad_never_enters_it(tmp_path, monkeypatch):
    """Nodes run as threads take a process-wide lock when marked ``forward_ad`` (jvp's state is
    process-global). With ``kernel: mlp`` the linearized PBRFs and LiSSA's GNH products need no
    jvp, so their nodes run unlocked; running the whole study with every entry into forward-mode
    AD counted proves the marks: no unmarked node enters it, and the default marks stay."""
    import torch._functorch.eager_transforms as eager
    from pipeline_fixtures import run_study

    default = _plan(smoke_config())
    assert {n.id for n in default if n.forward_ad} >= {"influence", "retrain-linearized_pbrf"}
    cfg = smoke_config(kernel="mlp")
    marked = {n.id for n in _plan(cfg) if n.forward_ad}
    assert "influence" not in marked and "retrain-linearized_pbrf" not in marked
    entered: list[str] = []
    current = {"node": ""}
    real_jvp = eager._jvp_with_argnums

    def counting(*args, **kwargs):
        entered.append(current["node"])
        return real_jvp(*args, **kwargs)

    monkeypatch.setattr(eager, "_jvp_with_argnums", counting)
    import tasks.engine.runner as runner

    real_run = runner.run_node

    def run_node(root, cfg_, node_id, **kw):
        current["node"] = node_id
        return real_run(root, cfg_, node_id, **kw)

    monkeypatch.setattr("pipeline_fixtures.run_node", run_node)
    run_study(tmp_path, cfg)
    assert entered, "the counter never saw a jvp (the spectrum node takes them)"
    assert set(entered) <= marked, set(entered) - marked
