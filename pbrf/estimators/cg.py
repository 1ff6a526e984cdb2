"""``cg``: conjugate gradients on ``(C + λI) q = g_S`` (Eq. 50), all M right-hand sides at once.

Settings are the solver's (:class:`pbrf.solvers.settings.CGSettings`: ``max_iter``, ``tol``);
the damping is the interface's ``λ`` (no conversion). Non-convergence is reported in
``info["converged"]``/``info["warnings"]``, not raised.
"""

from __future__ import annotations

from pydantic import ConfigDict

from pbrf.estimators._solver import solve_and_estimate
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs
from pbrf.solvers.settings import CGSettings


class CGEstimatorSettings(CGSettings):
    """The solver's own settings (``name="cg"``), frozen and closed."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def estimate(inputs: EstimatorInputs, settings: CGEstimatorSettings) -> Estimate:
    return solve_and_estimate("cg", inputs, settings)


ESTIMATOR = Estimator("cg", CGEstimatorSettings, estimate)
