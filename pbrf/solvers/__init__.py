"""Inverse-Hessian-vector-product solvers (Appendix D). Each takes a matvec, not a model."""

from pbrf.solvers.cg import CGResult, conjugate_gradient
from pbrf.solvers.exact import exact_solve
from pbrf.solvers.lissa import LissaDivergenceError, LissaResult, lissa
from pbrf.solvers.power import top_eigenvalue

__all__ = [
    "CGResult",
    "LissaDivergenceError",
    "LissaResult",
    "conjugate_gradient",
    "exact_solve",
    "lissa",
    "top_eigenvalue",
]
