"""The parameters every study flow shares (one pydantic base, so the Prefect UI renders a form),
the run directory each flow defaults to, flow-run names, and Prefect artifact keys.

Each flow adds only its own fields: ``DecompositionParams`` the drift check, ``GradeParams``
the estimators, ``SweepParams`` the sweep and its grid. Flow modules do not use
``from __future__ import annotations``: Prefect resolves these annotations at run time.
"""

import datetime as _dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pbrf.study.presets import DEFAULT_PRESET


class RunParams(BaseModel):
    """Where and how to run: scale, overrides, output directory, device, refresh."""

    scale: str | None = Field(None, description="preset scale, e.g. smoke, cpu or paper")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='dotted config keys to override, e.g. {"train.optimizer.lr": 0.05}',
    )
    out: str | None = Field(None, description="output directory (default: under runs/)")
    device: str | None = Field(None, description="cpu, cuda, cuda:N (default: the config's)")
    refresh: bool = Field(False, description="recompute every step, ignoring finished ones")

    def overrides_on(self) -> dict[str, Any]:
        """The overrides with ``device`` applied."""
        overrides = dict(self.overrides)
        if self.device is not None:
            overrides["device"] = self.device
        return overrides

    def run_dir(self, name: str, kind: str = "") -> Path:
        """``out``, else ``runs/NAME[-SCALE][-KIND]``: each flow's own default directory."""
        if self.out:
            return Path(self.out)
        return Path("runs") / "-".join(p for p in (name, self.scale, kind) if p)


class StudyParams(RunParams):
    """A preset at a scale, plus :class:`RunParams`."""

    preset: str = Field(DEFAULT_PRESET, description="preset name (pbrf presets)")

    def config(self) -> Any:
        """The validated study config (built once per flow run)."""
        from pbrf.study.presets import load_preset

        return load_preset(self.preset, self.overrides_on(), self.scale)


def run_namer(field: str, default: str, kind: str = ""):
    """A ``flow_run_name`` callable: ``[KIND-]NAME[-SCALE]-YYYY-MM-DD-HHMM`` from the run's
    parameters (``field`` names the preset or sweep)."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters.get("params") or {}
        if isinstance(params, BaseModel):
            params = params.model_dump()
        if not isinstance(params, dict):
            params = {}
        parts = (kind, params.get(field) or default, params.get("scale") or "")
        return "-".join(p for p in parts if p) + f"-{_dt.datetime.now():%Y-%m-%d-%H%M}"

    return name


def artifact_key(text: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
