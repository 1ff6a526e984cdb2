"""The ``decomposition`` flow: prepare → base → (5 variants ∥ influence) → aggregate → report.

Parameters are one pydantic model, :class:`DecompositionParams`, so the Prefect UI renders a
form (preset, overrides, output directory, device, refresh). Steps and caching live in
:mod:`tasks.prefect_tasks`; this module only composes them and publishes the tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flows import settings

settings.apply()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.futures import PrefectFuture  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from pbrf.config import StudyConfig  # noqa: E402
from pbrf.presets import DEFAULT_PRESET, load_preset  # noqa: E402
from tasks.prefect_tasks import submit_step  # noqa: E402
from tasks.report import Results, table2_markdown, table5_markdown  # noqa: E402
from tasks.runtime import configure_threads  # noqa: E402
from tasks.steps import write_config  # noqa: E402


class DecompositionParams(BaseModel):
    """What to run: a preset plus ``key.path: value`` overrides, and where."""

    preset: str = Field(DEFAULT_PRESET, description="preset name (pbrf presets)")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='dotted config keys to override, e.g. {"train.lr": 0.05}',
    )
    out: str | None = Field(None, description="run directory (default: runs/<preset>)")
    device: str | None = Field(None, description="cpu, cuda, cuda:N (default: the config's)")
    refresh: bool = Field(False, description="recompute every step, ignoring the cache")

    def config(self) -> StudyConfig:
        overrides = dict(self.overrides)
        if self.device is not None:
            overrides["device"] = self.device
        return load_preset(self.preset, overrides)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.preset


def _key(text: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def publish(out: Path, cfg: StudyConfig) -> None:
    """Table 5 and Table 2 as Prefect table artifacts, the report as a markdown artifact."""
    res = Results(out, cfg)
    gaps = [
        {"gap": r.gap, "mean": r.mean, "std": r.std, "n": r.n}
        for r in res.gaps.itertuples(index=False)
    ]
    corr = [
        {"reference": r.reference, "pearson": r.pearson, "spearman": r.spearman, "n": r.n}
        for r in res.correlations.itertuples(index=False)
    ]
    name = _key(cfg.name)
    create_table_artifact(gaps, key=f"{name}-table5-gaps", description="Table 5: gaps")
    create_table_artifact(
        corr, key=f"{name}-table2-correlations", description="Table 2: test-loss correlations"
    )
    md = "\n\n".join(
        ["## Table 5 (gaps)", table5_markdown(res), "## Table 2", table2_markdown(res)]
    )
    text = (out / "report" / "report.md").read_text(encoding="utf-8")
    create_markdown_artifact(md, key=f"{name}-tables", description=f"{cfg.name}: tables")
    create_markdown_artifact(text, key=f"{name}-report", description=f"{cfg.name}: report.md")


def _status(futures: dict[str, PrefectFuture]) -> dict[str, dict[str, Any]]:
    out = {}
    for label, fut in futures.items():
        record = fut.result()
        out[label] = {"state": fut.state.name, "seconds": record["seconds"]}
    return out


@flow(
    name="decomposition",
    task_runner=ThreadPoolTaskRunner(max_workers=8),
    validate_parameters=True,
)
def decomposition(params: DecompositionParams = DecompositionParams()) -> dict[str, Any]:  # noqa: B008
    """Run the five-term decomposition study; return the run directory and each step's state
    (``Completed`` or ``Cached``) with the seconds its computation took."""
    cfg = params.config()
    configure_threads(parallel=len(cfg.retrain.variants) + 1)
    out = params.out_dir()
    write_config(out, cfg)
    refresh = params.refresh

    def submit(step: str, *, variant: str | None = None, wait_for=()) -> PrefectFuture:
        return submit_step(step, out, cfg, variant=variant, wait_for=wait_for, refresh=refresh)

    futures: dict[str, PrefectFuture] = {}
    futures["prepare"] = submit("prepare")
    futures["train_base"] = submit("train_base", wait_for=[futures["prepare"]])
    futures["select"] = submit("select", wait_for=[futures["prepare"]])
    upstream = [futures["train_base"], futures["select"]]
    for v in cfg.retrain.variants:
        futures[f"retrain[{v}]"] = submit("retrain", variant=v, wait_for=upstream)
    futures["influence"] = submit("influence", wait_for=upstream)
    fanned = [f for k, f in futures.items() if k.startswith("retrain") or k == "influence"]
    futures["aggregate"] = submit("aggregate", wait_for=fanned)
    futures["report"] = submit("report", wait_for=[futures["aggregate"]])
    futures["report"].wait()
    steps = _status(futures)
    publish(out, cfg)
    return {"out": os.fspath(out), "config": cfg.model_dump(mode="json"), "steps": steps}
