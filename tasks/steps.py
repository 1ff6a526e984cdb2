"""The step registry: name → plain function, and one uniform way to run a step."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbrf.config import StudyConfig
from tasks.artifacts import write_json
from tasks.fingerprint import STEPS, config_hash
from tasks.layout import RunLayout

# step → "module:function"; imported on demand so that a DVC stage (one process per step)
# loads only what its step needs (e.g. matplotlib only for the report).
STEP_FUNCTIONS: dict[str, str] = {
    "prepare": "tasks.prepare:prepare",
    "train_base": "tasks.train_base:train_base",
    "select": "tasks.selection:select",
    "retrain": "tasks.retrain:retrain",
    "influence": "tasks.influence:influence",
    "aggregate": "tasks.aggregate:aggregate",
    "report": "tasks.report:report",
}
assert tuple(STEP_FUNCTIONS) == STEPS


def step_function(step: str) -> Callable[..., list[Path]]:
    """The plain function implementing ``step``."""
    if step not in STEP_FUNCTIONS:
        raise ValueError(f"unknown step {step!r}; choose one of {list(STEP_FUNCTIONS)}")
    module, name = STEP_FUNCTIONS[step].split(":")
    return getattr(importlib.import_module(module), name)


def run_step(
    step: str,
    out: Path | str,
    cfg: StudyConfig,
    *,
    variant: str | None = None,
    data_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Run one step; return a JSON-able record (step, variant, outputs, config hash, seconds)."""
    fn = step_function(step)
    if (step == "retrain") != (variant is not None):
        raise ValueError("--variant is required for step 'retrain' and only for it")
    kwargs: dict[str, Any] = {}
    if step == "retrain":
        kwargs["variant"] = variant
    if step == "prepare" and data_dir is not None:
        kwargs["data_dir"] = data_dir
    # a step replaces all of its outputs: remove the old ones first, so an interrupted run
    # cannot leave a mix of old and new files behind
    for path in RunLayout(out).outputs(step, variant):
        path.unlink(missing_ok=True)
    start = time.perf_counter()
    paths = fn(out, cfg, **kwargs)
    root = Path(out)
    return {
        "step": step,
        "variant": variant,
        "config_hash": config_hash(cfg, step),
        "outputs": [p.relative_to(root).as_posix() for p in paths],
        "seconds": round(time.perf_counter() - start, 3),
    }


def write_config(out: Path | str, cfg: StudyConfig) -> Path:
    """Save the validated config next to the artifacts (``config.json``), with its step hashes."""
    layout = RunLayout(out)
    return write_json(
        layout.config,
        {
            "config": cfg.model_dump(mode="json"),
            "hashes": {s: config_hash(cfg, s) for s in STEPS},
        },
    )


def read_config(out: Path | str) -> StudyConfig:
    """The config saved by :func:`write_config` in run directory ``out``."""
    import json

    path = RunLayout(out).config
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} is not a pbrf run directory")
    return StudyConfig.model_validate(json.loads(path.read_text())["config"])
