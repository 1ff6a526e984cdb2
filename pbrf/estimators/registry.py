"""One registry ``name → (settings model, function)`` over all estimators.

Modules are imported on first use (kronfluence takes seconds to import, and the solver-backed
estimators need :mod:`pbrf.solvers.settings`), so asking for one estimator loads only it.
:func:`run_estimator` is what a pipeline calls: it validates nothing beyond the settings model,
runs the estimator, and records wall time and peak memory in ``Estimate.info``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, TypeAdapter

from pbrf.estimators._measure import measure
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs

MODULES: dict[str, str] = {
    "exact": "pbrf.estimators.exact",
    "cg": "pbrf.estimators.cg",
    "lissa": "pbrf.estimators.lissa",
    "arnoldi": "pbrf.estimators.arnoldi",
    "kfac": "pbrf.estimators.kfac",
    "ekfac": "pbrf.estimators.ekfac",
    "trak": "pbrf.estimators.trak",
    "tracin": "pbrf.estimators.tracin",
    "grad_dot": "pbrf.estimators.grad_dot",
    "grad_cos": "pbrf.estimators.grad_cos",
}
ESTIMATOR_NAMES: tuple[str, ...] = tuple(MODULES)


def get_estimator(name: str) -> Estimator:
    """The registry entry of ``name`` (imports its module)."""
    if name not in MODULES:
        raise ValueError(f"unknown estimator {name!r}; choose one of {list(MODULES)}")
    entry = importlib.import_module(MODULES[name]).ESTIMATOR
    if entry.name != name:
        raise RuntimeError(f"module {MODULES[name]} registers {entry.name!r}, not {name!r}")
    return entry


def registry(names: Iterable[str] = ESTIMATOR_NAMES) -> dict[str, Estimator]:
    """``name → Estimator`` for ``names`` (all by default)."""
    return {n: get_estimator(n) for n in names}


def settings_adapter(names: Iterable[str] = ESTIMATOR_NAMES) -> TypeAdapter:
    """A pydantic adapter for the union of the settings models, discriminated by ``name``."""
    models = tuple(get_estimator(n).settings for n in names)
    union = models[0] if len(models) == 1 else Union[models]  # noqa: UP007
    return TypeAdapter(Annotated[union, Field(discriminator="name")])


def parse_settings(data: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate ``{"name": ..., **fields}`` into that estimator's settings model."""
    if isinstance(data, BaseModel):
        return data
    if "name" not in data:
        raise ValueError(f"estimator settings need a 'name' (one of {list(MODULES)})")
    return get_estimator(data["name"]).settings.model_validate(dict(data))


def run_estimator(settings: BaseModel | Mapping[str, Any], inputs: EstimatorInputs) -> Estimate:
    """Run the estimator named by ``settings`` and add ``wall_time_s``/``peak_memory_mb`` to info."""
    settings = parse_settings(settings)
    entry = get_estimator(settings.name)  # type: ignore[attr-defined]
    with measure(inputs.theta.device) as cost:
        result = entry(inputs, settings)
    return replace(result, info={**result.info, **cost, "settings": settings.model_dump()})
