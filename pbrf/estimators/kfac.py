"""``kfac``: K-FAC influence through kronfluence (``strategy="kfac"``).

Per ``nn.Linear`` layer the GNH block is approximated by ``A ⊗ S`` (input-activation and
output-gradient second moments, bias as an extra input column), fitted by kronfluence from
gradients that reproduce the GNH exactly (``fisher="exact"``) or from sampled targets
(kronfluence's true Fisher, ``fisher="sampled"``); layers are independent (block diagonal).
kronfluence's damping is ``λ + w`` (see :mod:`pbrf.estimators._kronfluence`), so
``(A ⊗ S + (λ + w)I)⁻¹ ≈ (G + λI)⁻¹``; it is applied to our ``g_S`` (weight decay included) and
Eq. 10/23 are assembled with ε = 1/N and the interface's sign. Exact for a single linear layer
with squared-error loss, whose GNH is ``E[x̃x̃ᵀ] ⊗ I``.
"""

from __future__ import annotations

from typing import Literal

from pbrf.estimators._common import from_ihvp, removal_grads
from pbrf.estimators._kronfluence import KronfluenceSettings, fit_preconditioner
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs


class KfacSettings(KronfluenceSettings):
    name: Literal["kfac"] = "kfac"


def estimate(inputs: EstimatorInputs, settings: KfacSettings) -> Estimate:
    pre = fit_preconditioner(inputs, "kfac", settings)
    grads = removal_grads(inputs)
    return from_ihvp("kfac", inputs, grads, pre.apply(grads), pre.info)


ESTIMATOR = Estimator("kfac", KfacSettings, estimate)
