"""The ``sweep`` flow: a decomposition at every point of a grid, each computation once.

One Prefect task per point and node (named ``<point>/<node>``), with ``wait_for`` edges from the
point's own plan plus, for a node that an earlier point shares (same config stamp), an edge to
that point's task — so the first point computes it and the others link its outputs
(``Reused``, :mod:`tasks.sweeps.points`). Then the tidy table, the Figure-5 plot and the report
section are collected and published as table and markdown artifacts.
"""

import functools
import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from flows import settings

settings.apply()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.params import RunParams, artifact_key, run_namer  # noqa: E402
from flows.prefect_tasks import submit_node, warm_up  # noqa: E402
from flows.threads import configure_threads  # noqa: E402

DEFAULT_SWEEP = "fig5-damping"
MAX_WORKERS = 8


class SweepParams(RunParams):
    """What to sweep: a sweep preset (or a study preset with a grid) at a scale, and where."""

    sweep: str = Field(DEFAULT_SWEEP, description="sweep preset (pbrf sweeps) or study preset")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description='swept keys and values; replaces or adds an axis, e.g. {"damping": [0.1]}',
    )
    out: str | None = Field(None, description="sweep directory (default runs/sweeps/SWEEP-SCALE)")
    tune_lr: bool | None = Field(
        None,
        description=(
            "choose each point's learning rate by the paper's validation sweep first "
            "(None: as the sweep's scale says, on at the paper scale)"
        ),
    )

    def spec(self):
        from pbrf.study.sweeps import resolve_sweep
        from tasks.sweeps.tune_points import tuned_if_asked

        spec = resolve_sweep(self.sweep, self.scale, grid=self.grid, overrides=self.overrides_on())
        return tuned_if_asked(self.out_dir(spec.name), spec, self.tune_lr)

    def out_dir(self, name: str) -> Path:
        return Path(self.out) if self.out else Path("runs") / "sweeps" / name


@functools.lru_cache(maxsize=4)
def _plan(spec_json: str):
    from pbrf.study.sweeps import SweepSpec
    from tasks.sweeps.points import plan_sweep

    return plan_sweep(SweepSpec.model_validate_json(spec_json))


def publish_sweep(out: Path, sp: Any, collected: dict[str, Any]) -> None:
    """The per-point summary and the tidy table as table artifacts, the report as markdown."""
    from tasks.sweeps.collect import OUTPUTS, summary_rows

    table = collected["table"]
    name = artifact_key(sp.spec.name)
    create_table_artifact(
        summary_rows(sp, table),
        key=f"{name}-summary",
        description=f"{sp.spec.name}: the five gaps and Spearman correlations per point",
    )
    tidy = json.loads(table.to_json(orient="records"))
    create_table_artifact(tidy, key=f"{name}-table", description=f"{sp.spec.name}: tidy table")
    text = (out / OUTPUTS["report"]).read_text(encoding="utf-8")
    create_markdown_artifact(text, key=f"{name}-report", description=f"{sp.spec.name}: report")


@flow(
    name="sweep",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS),
    validate_parameters=True,
    flow_run_name=run_namer("sweep", DEFAULT_SWEEP),
)
def sweep(params: SweepParams = SweepParams()) -> dict[str, Any]:  # noqa: B008
    """Run every point of a sweep (sharing nodes between points), then collect the table,
    figure and report; return the sweep directory and each node's state per point."""
    from tasks.sweeps.collect import collect
    from tasks.sweeps.points import run_sweep_node, summarize, write_sweep

    spec = params.spec()
    spec_json = spec.model_dump_json()
    sp = _plan(spec_json)
    out = params.out_dir(spec.name)
    write_sweep(out, sp)
    configure_threads(parallel=MAX_WORKERS)
    warm_up()
    futures: dict[tuple[str, str], Any] = {}
    for p in sp.points:
        for node in sp.plans[p.id]:
            wait = [futures[(p.id, u)] for u in node.upstream]
            owner = sp.owner[node.stamp]
            if owner != p.id:
                wait.append(futures[(owner, node.id)])
            futures[(p.id, node.id)] = submit_node(
                f"{p.id}/{node.id}",
                partial(run_sweep_node, str(out), sp, p.id, node.id, refresh=params.refresh),
                device=p.config.device,
                forward_ad=node.forward_ad,
                wait_for=wait,
            )
    nodes: dict[str, dict[str, Any]] = {}
    results = []
    from tasks.sweeps.points import SweepNodeResult

    for (pid, node_id), fut in futures.items():
        record = fut.result()
        record = {**record, "state": fut.state.name}
        nodes[f"{pid}/{node_id}"] = record
        results.append(SweepNodeResult(**record))
    collected = collect(sp, out, force=params.refresh)
    publish_sweep(out, sp, collected)
    return {
        "out": os.fspath(out),
        "sweep": spec.name,
        "nodes": nodes,
        "counts": summarize(results),
        "collect": collected["state"],
        "verdicts": [v.text for v in collected["verdicts"]],
    }
