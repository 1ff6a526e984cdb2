"""``ekfac``: EK-FAC influence through kronfluence (``strategy="ekfac"``).

As K-FAC (:mod:`pbrf.estimators.kfac`), but in the Kronecker eigenbasis ``Q_A ⊗ Q_S`` the
eigenvalues are replaced by the exact diagonal of the layer's GNH block,
``Λ = (1/N) Σ_i Σ_c (Q_Sᵀ g_ic a_iᵀ Q_A)²`` (George et al., 2018), fitted by kronfluence's
Lambda pass. Damping ``λ + w`` is added to ``Λ`` by kronfluence; Eq. 10/23 with ε = 1/N and the
interface's sign. Exact whenever each layer's GNH block is diagonal in that basis, e.g. a single
linear layer with squared-error loss.
"""

from __future__ import annotations

from typing import Literal

from pbrf.estimators._common import from_ihvp, removal_grads
from pbrf.estimators._kronfluence import KronfluenceSettings, fit_preconditioner
from pbrf.estimators.base import Estimate, Estimator, EstimatorInputs


class EkfacSettings(KronfluenceSettings):
    name: Literal["ekfac"] = "ekfac"


def estimate(inputs: EstimatorInputs, settings: EkfacSettings) -> Estimate:
    pre = fit_preconditioner(inputs, "ekfac", settings)
    grads = removal_grads(inputs)
    return from_ihvp("ekfac", inputs, grads, pre.apply(grads), pre.info)


ESTIMATOR = Estimator("ekfac", EkfacSettings, estimate)
