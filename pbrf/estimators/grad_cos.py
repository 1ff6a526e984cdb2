"""``grad_cos``: cosine similarity of test and removal gradients (a ranking score, not a ΔL).

``test_reduction="per_point"`` (the literature's gradient cosine): the mean over the P test
points of ``cos(∇ℓ_p(θˢ), g_S)``; ``"mean_gradient"``: ``cos(∇L_test, g_S)`` with the gradient of
the mean test loss, which ranks like ``grad_dot`` divided by ``‖g_S‖``. Both keep the
interface's sign (positive: removal increases the test loss, as ``grad_dot``), but have no loss
units: the estimate is marked ``calibrated=False`` and defines neither Δθ nor a self-influence
(``cos(g_S, g_S) = 1``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from pbrf.estimators._common import removal_grads, test_grad, test_point_grads
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs, EstimatorSettings


class GradCosSettings(EstimatorSettings):
    name: Literal["grad_cos"] = "grad_cos"
    test_reduction: Literal["per_point", "mean_gradient"] = "per_point"


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def estimate(inputs: EstimatorInputs, settings: GradCosSettings) -> Estimate:
    grads = _unit(removal_grads(inputs))
    if settings.test_reduction == "per_point":
        score = (grads @ _unit(test_point_grads(inputs)).T).mean(-1)
    else:
        score = grads @ _unit(test_grad(inputs))
    return Estimate(
        name="grad_cos",
        predicted_change=score,
        calibrated=False,
        info={"test_reduction": settings.test_reduction},
    )


ESTIMATOR = Estimator("grad_cos", GradCosSettings, estimate)
