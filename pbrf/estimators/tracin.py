"""``tracin``: TracInCP (Pruthi et al., 2020) over saved training checkpoints.

Derivation of the factors. The training objectives of :mod:`pbrf.objectives` step with the
batch mean: ``θ_{t+1} = θ_t − (η_t/B) Σ_{i∈B_t} ∇ℓ_i(θ_t)`` (B the nominal batch size, N for
full batch). Removing ``z ∈ B_t`` from that one step moves ``θ_{t+1}`` by
``+(η_t/B) ∇ℓ_z(θ_t)``, so to first order the test loss after the step changes by

    (η_t / B) ∇L_test(θ_t)ᵀ ∇ℓ_z(θ_t)        (positive: removal increases the test loss)

TracIn keeps this first-order, per-step effect and ignores how it propagates through the later
steps. Summed over the steps that visit ``z`` and approximated at checkpoints (checkpoint k
standing for ``visits_k`` visits at learning rate ``η_k``):

    ΔL_S = Σ_k (η_k · visits_k / B) ∇L_test(θ_k)ᵀ g_S(θ_k),    g_S = Σ_{z∈S} ∇ℓ_z

The literature's raw ``Σ_k η_k ∇ℓ(θ_k, z')ᵀ∇ℓ(θ_k, z)`` is thus multiplied by ``visits_k / B``;
the ε = 1/N of the other estimators appears only through B = N for full-batch training (one
full-batch step: factor ``η ε``). ``∇L_test`` is the gradient of the mean loss over the P test
points, ``∇ℓ_z`` includes the weight decay (removing z removes its share of the regularizer,
Eq. 1). Self-influence: ``Σ_k (η_k visits_k / B) ‖g_S(θ_k)‖²``. No Δθ is returned: the test
gradient is taken at each checkpoint, not at θˢ.
"""

from __future__ import annotations

from typing import Literal

import torch

from pbrf.estimators._common import removal_grads, test_grad
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs, EstimatorSettings


class TracInSettings(EstimatorSettings):
    name: Literal["tracin"] = "tracin"


def estimate(inputs: EstimatorInputs, settings: TracInSettings) -> Estimate:
    del settings
    if not inputs.checkpoints:
        raise ValueError("tracin needs training checkpoints (EstimatorInputs.checkpoints)")
    batch = inputs.train_batch_size or inputs.n_train
    batch = min(batch, inputs.n_train)
    change = torch.zeros(inputs.num_removals, dtype=inputs.theta.dtype, device=inputs.theta.device)
    selfinf = torch.zeros_like(change)
    for ckpt in inputs.checkpoints:
        weight = ckpt.lr * ckpt.visits / batch
        grads = removal_grads(inputs, ckpt.theta)
        change = change + weight * (grads @ test_grad(inputs, ckpt.theta))
        selfinf = selfinf + weight * (grads * grads).sum(-1)
    return Estimate(
        name="tracin",
        predicted_change=change,
        self_influence=selfinf,
        info={"checkpoints": len(inputs.checkpoints), "batch_size": batch},
    )


ESTIMATOR = Estimator("tracin", TracInSettings, estimate)
