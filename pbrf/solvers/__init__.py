"""Inverse-curvature-vector-product solvers (Appendix D) and their settings.

Solvers take a matvec (or, for the direct solves, a matrix, a matrix builder or a factor), never
a model; :func:`pbrf.influence.inverse_curvature_product` connects them to a model.
"""

from pbrf.solvers.cg import CGResult, conjugate_gradient
from pbrf.solvers.errors import (
    HessianDivergenceError,
    LissaDivergenceError,
    LissaGridDivergenceError,
    NonPositiveScaleError,
    NotPositiveDefiniteError,
)
from pbrf.solvers.exact import DirectResult, dense_solve, dual_solve, exact_solve
from pbrf.solvers.lissa import LissaResult, ScaleTrial, lissa, lissa_grid
from pbrf.solvers.power import EigenEstimate, power_iteration, top_eigenvalue
from pbrf.solvers.settings import (
    SCALE_GRID,
    SOLVER_SETTINGS,
    CGSettings,
    ExactSettings,
    LissaSettings,
    SolverSettings,
)

__all__ = [
    "SCALE_GRID",
    "SOLVER_SETTINGS",
    "CGResult",
    "CGSettings",
    "DirectResult",
    "EigenEstimate",
    "ExactSettings",
    "HessianDivergenceError",
    "LissaDivergenceError",
    "LissaGridDivergenceError",
    "LissaResult",
    "LissaSettings",
    "NonPositiveScaleError",
    "NotPositiveDefiniteError",
    "ScaleTrial",
    "SolverSettings",
    "conjugate_gradient",
    "dense_solve",
    "dual_solve",
    "exact_solve",
    "lissa",
    "lissa_grid",
    "power_iteration",
    "top_eigenvalue",
]
