"""The ``grade`` flow: influence estimators scored against the PBRF, as Prefect tasks.

The plan is the decomposition's (base model, removals, test points, the retrained optima that
serve as references) plus one ``estimate-<name>`` node per graded estimator and a ``grade``
node; every node is a Prefect task with ``wait_for`` its registry edges, and a finished node is
reused. With ``isolate_costs`` (the default) the estimator tasks start once the decomposition's
nodes have finished and run one after another, so each estimator's wall time and peak memory
are its own; without it every node is submitted at once and the estimators run in parallel with
each other and with retraining (faster on many cores; the table's ``load_average`` shows the
contention). The grading table is published as a Prefect table artifact.
"""

import os
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from flows import settings

settings.apply()

from prefect import flow  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.params import StudyParams, run_namer  # noqa: E402
from flows.prefect_tasks import submit_node, warm_up  # noqa: E402
from flows.threads import configure_threads, study_parallel  # noqa: E402
from pbrf.estimators import ESTIMATOR_NAMES  # noqa: E402
from pbrf.study.presets import DEFAULT_PRESET, load_preset  # noqa: E402


class GradeParams(StudyParams):
    """What to grade: a preset at a scale, the estimators, overrides, and where to run."""

    estimators: list[str] | None = Field(
        None,
        description="estimators to grade (default: every built-in estimator that applies, "
        "unless the overrides set grade.estimators)",
    )
    out: str | None = Field(None, description="run directory (default: runs/PRESET[-SCALE]-grade)")
    isolate_costs: bool = Field(
        True,
        description="run the estimators one at a time after the decomposition, so each "
        "one's wall time and peak memory are its own",
    )

    @field_validator("estimators")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = [n for n in v if n not in ESTIMATOR_NAMES]
        if unknown:
            raise ValueError(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATOR_NAMES)}")
        if not v:
            raise ValueError("name at least one estimator")
        return v

    def config(self) -> tuple[Any, list[str]]:
        """The validated study config with grading on, and notes on estimators left out.

        ``overrides["grade.estimators"]`` replaces the estimator list; overrides of single
        settings (``grade.estimators.cg.tol``) apply on top of ``estimators`` (default: all).
        """
        from pbrf.study.grading import grade_overrides

        overrides = self.overrides_on()
        if "grade.estimators" in overrides and self.estimators is None:
            return load_preset(self.preset, overrides, self.scale), []
        tweaks = {k: v for k, v in overrides.items() if k.startswith("grade.estimators.")}
        rest = {k: v for k, v in overrides.items() if k not in tweaks}
        base = load_preset(self.preset, rest, self.scale)
        extra, notes = grade_overrides(base, self.estimators)
        extra = {k: v for k, v in extra.items() if k not in rest}
        return load_preset(self.preset, {**rest, **extra, **tweaks}, self.scale), notes

    def out_dir(self) -> Path:
        return self.run_dir(self.preset, "grade")  # never the decomposition's directory


@flow(
    name="grade",
    task_runner=ThreadPoolTaskRunner(max_workers=8),
    validate_parameters=True,
    flow_run_name=run_namer("preset", DEFAULT_PRESET, "grade"),
)
def grade(params: GradeParams = GradeParams()) -> dict[str, Any]:  # noqa: B008
    """Grade influence estimators against the PBRF, linearized PBRF, the exact damped solve and
    LOO retraining; return the run directory, each node's state, seconds and warnings, and
    notes on estimators left out."""
    from tasks.engine.plan import build_plan
    from tasks.engine.runner import run_node, write_run_config

    cfg, notes = params.config()
    config = cfg.model_dump(mode="json")
    plan = build_plan(config)
    out = params.out_dir()
    write_run_config(out, cfg)
    warm_up()
    estimates = [n.id for n in plan.of_step("estimate")]
    later = set(estimates) | {d for e in estimates for d in plan.downstream(e)}
    futures: dict[str, Any] = {}

    def submit(node_id: str) -> Any:
        node = plan[node_id]
        futures[node_id] = submit_node(
            node_id,
            partial(run_node, str(out), cfg, node_id, plan=plan, force=params.refresh),
            device=cfg.device,
            forward_ad=node.forward_ad,
            wait_for=[futures[u] for u in node.upstream],
        )
        return futures[node_id]

    decomposition = study_parallel(cfg)
    if params.isolate_costs:
        configure_threads(parallel=decomposition)  # as `pbrf run`: same bits, reusable nodes
        first = [submit(n.id) for n in plan if n.id not in later]
        wait(first)
        for fut in first:
            fut.result()  # a failed decomposition node stops the flow here, with its error
        configure_threads(parallel=1)
        for node_id in estimates:
            submit(node_id).wait()
        for node in plan:
            if node.id not in futures:
                submit(node.id)
    else:
        configure_threads(parallel=decomposition + len(estimates))
        for node in plan:
            submit(node.id)
    nodes = {}
    for node_id in plan.nodes:
        fut = futures[node_id]
        nodes[node_id] = {**fut.result(), "state": fut.state.name}
    from flows.publish import artifact_scope, publish

    scope = artifact_scope(params.preset, params.scale)
    publish(out, cfg, plan, scope=scope)
    publish_grades(out, cfg, plan, scope=scope)
    return {"out": os.fspath(out), "config": config, "nodes": nodes, "notes": notes}


def publish_grades(out: Path, cfg: Any, plan: Any, *, scope: str) -> None:
    """The grading table as a Prefect table artifact, and its report section as Markdown
    (keys ``SCOPE-grades``, ``SCOPE-grading``)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tasks import schemas
    from tasks.engine.manifest import read_output
    from tasks.reports.grade_report import grading_markdown
    from tasks.reports.results import num

    node = plan.of_step("grade")[0]
    table = read_output(out, node, "grades", schemas.GRADES)
    rows = [
        {
            "Rank": int(r.rank),
            "Estimator": r.estimator,
            "Reference": r.reference,
            "Spearman": num(r.spearman, 3),
            "Spearman 95 % CI": f"[{num(r.spearman_low, 2)}, {num(r.spearman_high, 2)}]",
            "Pearson": num(r.pearson, 3),
            "Pearson 95 % CI": f"[{num(r.pearson_low, 2)}, {num(r.pearson_high, 2)}]",
            "Wall time (s)": num(r.wall_time_s, 3),
            "Peak memory (MB)": num(r.peak_memory_mb, 1),
            "Mislabel AUC": num(r.mislabel_auc, 3),
            "n": int(r.n),
        }
        for r in table.sort_values(["rank", "reference"]).itertuples(index=False)
    ]
    name = scope
    create_table_artifact(
        rows, key=f"{name}-grades", description="influence estimators graded against the PBRF"
    )
    create_markdown_artifact(
        grading_markdown(table, cfg.grade.rank_by),
        key=f"{name}-grading",
        description=f"{cfg.name}: estimator grading",
    )
