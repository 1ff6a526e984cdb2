"""``exact``: the damped influence function solved exactly (dense, small models).

``Δθ = ε (C + λI)⁻¹ g_S`` with ``C`` the GNH or Hessian (``inputs.curvature``), by the project's
exact solver (:class:`pbrf.solvers.settings.ExactSettings`: primal Cholesky in d dimensions or
the dual solve in the data dimensions). Conventions are the interface's own (Eq. 10, 23); no
conversion.
"""

from __future__ import annotations

from pydantic import ConfigDict

from pbrf.estimators._solver import solve_and_estimate
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs
from pbrf.solvers.settings import ExactSettings


class ExactEstimatorSettings(ExactSettings):
    """The solver's own settings (``name="exact"``, ``method``), frozen and closed."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def estimate(inputs: EstimatorInputs, settings: ExactEstimatorSettings) -> Estimate:
    return solve_and_estimate("exact", inputs, settings)


ESTIMATOR = Estimator("exact", ExactEstimatorSettings, estimate)
