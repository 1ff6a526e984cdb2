"""``grad_dot``: the gradient dot product, i.e. the influence function with identity curvature.

Setting ``G = 0`` and ``λ = 1`` in Eq. 10/23 gives ``Δθ = ε g_S``,
``ΔL = ε ∇L_testᵀ g_S`` and self-influence ``ε ‖g_S‖²``: the response of one unit gradient step
on the removal term. The raw dot product ``∇L_testᵀ g_S`` of the literature is converted by the
factor ``ε = 1/N`` per removed example, so its sign is the interface's (positive: removal
increases the test loss) and it is the exact influence of a model whose curvature is ``I``.
"""

from __future__ import annotations

from typing import Literal

from pbrf.estimators._common import removal_grads, test_grad
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs, EstimatorSettings


class GradDotSettings(EstimatorSettings):
    name: Literal["grad_dot"] = "grad_dot"


def estimate(inputs: EstimatorInputs, settings: GradDotSettings) -> Estimate:
    del settings
    grads = removal_grads(inputs)
    delta = inputs.eps * grads
    return Estimate(
        name="grad_dot",
        predicted_change=delta @ test_grad(inputs),
        param_response=delta,
        self_influence=inputs.eps * (grads * grads).sum(-1),
        info={"curvature": "identity", "implied_damping": 1.0},
    )


ESTIMATOR = Estimator("grad_dot", GradDotSettings, estimate)
