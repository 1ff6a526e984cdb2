"""pbrf: the response functions of Bae et al. (2022), their optima, and influence estimates.

Pure PyTorch math (no file output, no orchestration). The public API, importable from ``pbrf``:

* configs: :class:`StudyConfig` and its sections, the optimizers :class:`SGD`,
  :class:`Momentum`, :class:`Adam`, :class:`LBFGS`, the solvers :class:`LissaSettings`,
  :class:`CGSettings`, :class:`ExactSettings`; :func:`load_preset`
* data and models: :class:`DataConfig`, :func:`load_dataset`, :func:`build_model`,
  :class:`Problem`, :func:`get_loss`, :func:`flat_params`
* the optima of Table 1: :func:`train_base`, :func:`retrain` with a :class:`Schedule`
  (:func:`matched_epochs` matches a PBRF's horizon to LiSSA's T/σ)
* influence (Eq. 10, 23, 49): :func:`removal_gradients`, :func:`inverse_curvature_product`,
  :func:`grad_test_loss`, :func:`eval_test_loss`, :func:`predicted_test_loss_change`,
  :func:`self_influence`
* metrics and uncertainty: :func:`output_distance`, :func:`bootstrap_mean`,
  :func:`bootstrap_correlation`, :func:`jackknife_correlation`

Estimators beyond the iHVP solvers (EK-FAC, K-FAC, Arnoldi, TracIn, TRAK, gradient similarity)
live in :mod:`pbrf.estimators`.
"""

from pbrf.data import DataConfig, Dataset, load_dataset
from pbrf.influence import (
    grad_test_loss,
    inverse_curvature_product,
    predicted_test_loss_change,
    removal_gradients,
    self_influence,
)
from pbrf.losses import get_loss
from pbrf.metrics import eval_test_loss, output_distance
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import BaseRun, Response, Schedule, matched_epochs, retrain, train_base
from pbrf.solvers.settings import CGSettings, ExactSettings, LissaSettings
from pbrf.stats import bootstrap_correlation, bootstrap_mean, jackknife_correlation
from pbrf.study.config import (
    LBFGS,
    SGD,
    Adam,
    InfluenceConfig,
    Momentum,
    PBRFConfig,
    RetrainConfig,
    SelectConfig,
    StudyConfig,
    TrainConfig,
)
from pbrf.study.presets import load_preset

__all__ = [
    "LBFGS",
    "SGD",
    "Adam",
    "BaseRun",
    "CGSettings",
    "DataConfig",
    "Dataset",
    "ExactSettings",
    "InfluenceConfig",
    "LissaSettings",
    "Momentum",
    "PBRFConfig",
    "Problem",
    "Response",
    "RetrainConfig",
    "Schedule",
    "SelectConfig",
    "StudyConfig",
    "TrainConfig",
    "bootstrap_correlation",
    "bootstrap_mean",
    "build_model",
    "eval_test_loss",
    "flat_params",
    "get_loss",
    "grad_test_loss",
    "inverse_curvature_product",
    "jackknife_correlation",
    "load_dataset",
    "load_preset",
    "matched_epochs",
    "output_distance",
    "predicted_test_loss_change",
    "removal_gradients",
    "retrain",
    "self_influence",
    "train_base",
]
__version__ = "0.2.0"
