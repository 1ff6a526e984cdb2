"""The flows ``pbrf serve`` registers as Prefect deployments — one entry per study flow.

To serve a new study, append an :class:`Entry` to :data:`CATALOG` (the key becomes the
deployment's name, ``<flow name>/<key>`` in the UI). Flows and parameter models are named by
import path so that listing the catalog imports nothing heavy. A flow module must not use
``from __future__ import annotations``: the process ``serve`` starts for a run resolves the
flow's parameter annotations to build and validate its form.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Entry:
    flow: str  # "module:flow object"
    params: str  # "module:pydantic model" of the flow's parameter form
    description: str
    schedule: str | None = None  # cron of a standing schedule; None: on demand (Run button)
    # preset, scale → parameters of a scheduled, drift-checked reproduction (None: no nightly)
    nightly: Callable[[str, str | None], dict[str, Any]] | None = None

    def load_flow(self) -> Any:
        return _load(self.flow)

    def load_params(self) -> Any:
        return _load(self.params)


def _decomposition_nightly(preset: str, scale: str | None) -> dict[str, Any]:
    params = {"preset": preset, "scale": scale, "refresh": True, "drift_check": True}
    _load("flows.decomposition:DecompositionParams").model_validate(params).config()
    return {"params": params}


CATALOG: dict[str, Entry] = {
    "decomposition": Entry(
        flow="flows.decomposition:decomposition",
        params="flows.decomposition:DecompositionParams",
        description="The five-term decomposition study (Table 5, Table 2) of a preset.",
        nightly=_decomposition_nightly,
    ),
    "grade": Entry(
        flow="flows.grade:grade",
        params="flows.grade:GradeParams",
        description="Influence estimators graded against the PBRF, the exact solve and LOO.",
    ),
    "sweep": Entry(
        flow="flows.sweep:sweep",
        params="flows.sweep:SweepParams",
        description="The decomposition over a grid of config values (Figure 5).",
    ),
    "hessian-comparison": Entry(
        flow="flows.hessian:hessian_comparison",
        params="flows.hessian:HessianComparisonParams",
        description="A study with GNH and with Hessian influence (Tables 4 and 7 beside 5 and 6).",
    ),
}
