"""``lissa``: the truncated Neumann series of Agarwal et al. (Eq. 51-52), as the paper runs it.

Settings are the solver's (:class:`pbrf.solvers.settings.LissaSettings`: depth T, scale σ,
repeats, minibatch, power iterations, seed). LiSSA's own damping enters its recursion as
``h_t = v + (1 − λ/σ) h_{t−1} − C_t h_{t−1}/σ`` and its fixed point is ``(C + λI)⁻¹ v``: the
interface's ``λ`` is passed unchanged, and the ``1/σ`` rescaling is undone inside the solver.
With finite T it answers the PBRF's question at horizon ``T/σ`` (reported in ``info``).
"""

from __future__ import annotations

from pydantic import ConfigDict

from pbrf.estimators._solver import solve_and_estimate
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs
from pbrf.solvers.settings import LissaSettings


class LissaEstimatorSettings(LissaSettings):
    """The solver's own settings (``name="lissa"``), frozen and closed."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def estimate(inputs: EstimatorInputs, settings: LissaEstimatorSettings) -> Estimate:
    return solve_and_estimate("lissa", inputs, settings)


ESTIMATOR = Estimator("lissa", LissaEstimatorSettings, estimate)
