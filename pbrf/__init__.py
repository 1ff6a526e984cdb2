"""pbrf: the response functions of Bae et al. (2022), their optima, and influence estimates.

Pure PyTorch math (no file I/O, no orchestration). Main entry points:

* :class:`pbrf.problem.Problem` — network, output loss, weight decay
* :mod:`pbrf.objectives` — the objectives of Table 1
* :func:`pbrf.responses.train_base`, :func:`pbrf.responses.retrain` — θˢ and the five optima
* :mod:`pbrf.curvature`, :mod:`pbrf.solvers` — GNH/Hessian products, LiSSA, CG, exact
* :mod:`pbrf.influence`, :mod:`pbrf.metrics` — influence estimates, gaps and correlations
* :class:`pbrf.config.StudyConfig` — validated configuration
"""

from pbrf.config import StudyConfig
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.problem import Problem

__all__ = ["Problem", "StudyConfig", "build_model", "get_loss"]
__version__ = "0.1.0"
