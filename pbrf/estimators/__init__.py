"""Influence estimators behind one interface, to be scored against the PBRF.

* :class:`EstimatorInputs` — θˢ, data, removal sets, test points, damping λ, ε, curvature kind,
  optional TracIn checkpoints and the ``nn.Module`` kronfluence needs
* :class:`Estimate` — predicted test-loss change (M,), Δθ (M, d), self-influence (M,), info
* :func:`get_estimator`, :func:`registry`, :func:`parse_settings`, :func:`settings_adapter`,
  :func:`run_estimator` — the registry ``name → (settings model, function)``

Estimators (one module each): ``exact``, ``cg``, ``lissa`` (the project's solvers), ``arnoldi``,
``kfac``, ``ekfac`` (kronfluence), ``trak``, ``tracin``, ``grad_dot``, ``grad_cos``. Their
modules are imported on first use.
"""

from pbrf.estimators.base import (
    Checkpoint,
    Estimate,
    Estimator,
    EstimatorInputs,
    EstimatorSettings,
)
from pbrf.estimators.registry import (
    ESTIMATOR_NAMES,
    get_estimator,
    parse_settings,
    registry,
    run_estimator,
    settings_adapter,
)

__all__ = [
    "ESTIMATOR_NAMES",
    "Checkpoint",
    "Estimate",
    "Estimator",
    "EstimatorInputs",
    "EstimatorSettings",
    "get_estimator",
    "parse_settings",
    "registry",
    "run_estimator",
    "settings_adapter",
]
