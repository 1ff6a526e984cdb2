"""The solver-backed estimators (exact, CG, LiSSA): one iHVP through the project's solver API.

``q = (C + λI)⁻¹ g_S`` with ``C`` the GNH or Hessian of the training cost (``inputs.curvature``)
comes from :func:`pbrf.influence.inverse_curvature_product`; the solver's damping is the
project's ``λ`` itself (both add ``λI`` to the same ``C``, which already contains the weight
decay), so no conversion is needed. Eq. 10/23 are then assembled by
:func:`pbrf.estimators._common.from_ihvp`.
"""

from __future__ import annotations

from pydantic import BaseModel

from pbrf.estimators._common import from_ihvp, removal_grads
from pbrf.estimators.base import Estimate, EstimatorInputs
from pbrf.influence import inverse_curvature_product


def solve_and_estimate(name: str, inputs: EstimatorInputs, solver: BaseModel) -> Estimate:
    """Run the solver described by ``solver`` (a ``pbrf.solvers.settings`` model) on ``g_S``."""
    grads = removal_grads(inputs)
    res = inverse_curvature_product(
        inputs.problem,
        inputs.theta,
        inputs.x_train,
        inputs.t_train,
        grads,
        damping=inputs.damping,
        solver=solver,
        curvature=inputs.curvature,
        chunk_size=inputs.chunk_size,
    )
    info = {
        "solver": res.solver,
        "curvature": inputs.curvature,
        "converged": bool(res.converged),
        "warnings": list(res.warnings),
        **{f"solver_{k}": v for k, v in res.info.items()},
    }
    return from_ihvp(name, inputs, grads, res.x, info)
