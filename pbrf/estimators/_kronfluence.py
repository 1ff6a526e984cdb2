"""K-FAC / EK-FAC preconditioners fitted and applied by kronfluence, in memory (no files).

kronfluence's ``Analyzer`` writes factors and scores to an output directory; this module calls
the lower-level functions it wraps instead: ``fit_covariance_matrices_with_loader``,
``perform_eigendecomposition``, ``fit_lambda_matrices_with_loader`` (EK-FAC), then
``prepare_modules`` (kronfluence's damping and reciprocal of the eigenvalues) and each
strategy's ``precondition_gradient``, applied to our own gradients ``g_S`` (which include the
weight decay). kronfluence is imported lazily: it pulls in ``accelerate`` (seconds to import).

Conventions converted here:

* **Curvature.** kronfluence fits ``A ⊗ S`` per ``nn.Linear`` from the gradients of the loss its
  ``Task`` returns with ``sample=True`` (the "true Fisher", ``use_empirical_fisher=False``).
  Our task returns a pseudo-loss whose gradients give the GNH of the training cost *exactly*
  (``fisher="exact"``): each example is replicated m times (m output entries) and replica c
  back-propagates ``√m · L_i[:, c]``, where ``H_i = L_i L_iᵀ`` is the output Hessian
  (``Σ_c L_c L_cᵀ = H_i``, so ``Σ_c J_iᵀ L_c L_cᵀ J_i = J_iᵀ H_i J_i``). kronfluence averages
  ``A`` and ``S`` over all ``N·m`` replica rows; the ``√m`` restores ``S = (1/N) Σ_i Σ_c g gᵀ``,
  and the EK-FAC eigenvalue corrections ``Λ = (1/N) Σ_i Σ_c (Q_Sᵀ g a ᵀ Q_A)²`` likewise.
  ``fisher="sampled"`` is kronfluence's usual Monte-Carlo true Fisher instead: ``samples``
  targets drawn per example from the model's predictive distribution (Gaussian with unit
  variance for squared error, categorical for cross-entropy, Bernoulli for binary
  cross-entropy), whose expected outer product is the same GNH.
* **Sum vs mean.** The task's loss is a *sum* over the batch (kronfluence's convention: one
  per-example gradient per row); the factors are means, i.e. the GNH of the *mean* cost J.
* **Damping.** kronfluence adds ``damping_factor`` to the (corrected) eigenvalues of ``A ⊗ S``,
  which approximates the loss part of G only; the weight decay ``w`` of G is isotropic, so
  ``damping_factor = λ + w`` gives ``(A ⊗ S + (w + λ) I)⁻¹ ≈ (G + λI)⁻¹`` per layer.
* **Parameters outside nn.Linear** (kronfluence tracks Linear and Conv2d; only Linear is mapped
  here) get zero loss curvature: ``(w + λ)⁻¹ g`` on those entries, with a warning in ``info``.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from pbrf.estimators.base import EstimatorInputs, EstimatorSettings
from pbrf.losses import OutputLoss
from pbrf.params import load_flat_

Strategy = Literal["kfac", "ekfac"]
MODULE_CHECK_ROWS = 8  # training rows on which module(x) must reproduce problem.f(θ, x)


class KronfluenceSettings(EstimatorSettings):
    """Shared settings of ``kfac`` and ``ekfac``."""

    batch_size: int = Field(256, ge=1, description="examples per factor-fitting batch")
    fisher: Literal["exact", "sampled"] = "exact"
    samples: int = Field(1, ge=1, description="targets drawn per example (fisher='sampled')")
    seed: int = 0


def output_hessian_sqrt(loss: OutputLoss, y: Tensor, t: Tensor) -> Tensor:
    """``L (B, m, m)`` with ``L_i L_iᵀ = H_i``, the output Hessian of each example (m = y[0].numel()).

    ``H_i`` is built column by column from ``loss.output_hvp``; ``L_i = U √max(Λ, 0)``.
    """
    b, m = y.shape[0], y[0].numel()
    eye = torch.eye(m, dtype=y.dtype, device=y.device)
    cols = [
        loss.output_hvp(y, t, eye[j].reshape(y.shape[1:]).expand_as(y).contiguous()).reshape(b, m)
        for j in range(m)
    ]
    h = torch.stack(cols, dim=-1)
    evals, evecs = torch.linalg.eigh(0.5 * (h + h.transpose(1, 2)))
    return evecs * evals.clamp_min(0).sqrt()[:, None, :]


def sample_targets(loss: OutputLoss, y: Tensor, generator: torch.Generator) -> Tensor:
    """Targets drawn from the model's predictive distribution at outputs ``y`` (true Fisher)."""
    yc = y.detach().cpu()
    if loss.name == "squared_error":
        t = yc + torch.randn(yc.shape, generator=generator, dtype=yc.dtype)
    elif loss.name == "cross_entropy":
        probs = torch.softmax(yc, dim=-1).reshape(-1, yc.shape[-1])
        t = torch.multinomial(probs, 1, generator=generator).reshape(yc.shape[:-1])
    elif loss.name == "binary_cross_entropy":
        t = torch.bernoulli(torch.sigmoid(yc), generator=generator)
    else:
        raise ValueError(f"no predictive distribution known for loss {loss.name!r}")
    return t.to(y.device)


def _task(loss: OutputLoss, settings: KronfluenceSettings, out_numel: int) -> Any:
    from kronfluence.task import Task

    class GNHTask(Task):
        """``compute_train_loss(sample=True)``: a sum whose per-row gradients give the GNH."""

        def __init__(self) -> None:
            self.generator = torch.Generator().manual_seed(settings.seed)

        def compute_train_loss(self, batch: Any, model: nn.Module, sample: bool = False) -> Tensor:
            if not sample:
                raise ValueError(
                    "the GNH task fits the true Fisher only (use_empirical_fisher=False)"
                )
            x, t = batch
            if settings.fisher == "exact":
                reps = out_numel
                y = model(x.repeat_interleave(reps, dim=0))
                ys = y.detach().reshape(x.shape[0], reps, *y.shape[1:])[:, 0]
                coeff = output_hessian_sqrt(loss, ys, t).transpose(1, 2).reshape(y.shape)
                return math.sqrt(reps) * (coeff * y).sum()
            y = model(x.repeat_interleave(settings.samples, dim=0))
            return loss(y, sample_targets(loss, y, self.generator)).sum()

        def compute_measurement(self, batch: Any, model: nn.Module) -> Tensor:
            x, t = batch
            return loss(model(x), t).sum()

    return GNHTask()


@dataclass
class Preconditioner:
    """Fitted kronfluence factors and how they map onto the flat parameter vector."""

    strategy: Strategy
    model: nn.Module
    blocks: dict[str, tuple[slice, slice | None, tuple[int, int]]]  # module → weight, bias, shape
    untracked: list[slice]
    isotropic: float  # λ + w, used on untracked entries
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, grads: Tensor) -> Tensor:
        """``≈ (G + λI)⁻¹ g`` for each row of ``grads (M, d)``."""
        from kronfluence.factor.config import FactorConfig
        from kronfluence.module.tracked_module import TrackedModule

        out = torch.empty_like(grads)
        config = FactorConfig.CONFIGS[self.strategy]
        modules = {m.name: m for m in self.model.modules() if isinstance(m, TrackedModule)}
        for name, (w_sl, b_sl, (o, i)) in self.blocks.items():
            g = grads[:, w_sl].reshape(-1, o, i)
            if b_sl is not None:
                g = torch.cat([g, grads[:, b_sl].reshape(-1, o, 1)], dim=-1)
            pg = config.precondition_gradient(gradient=g, storage=modules[name].storage)
            out[:, w_sl] = pg[..., :i].reshape(grads.shape[0], -1)
            if b_sl is not None:
                out[:, b_sl] = pg[..., i]
        for sl in self.untracked:
            out[:, sl] = grads[:, sl] / self.isotropic
        return out


def _layout(
    module: nn.Module, names: tuple[str, ...], numels: tuple[int, ...]
) -> tuple[dict[str, tuple[slice, slice | None, tuple[int, int]]], list[slice]]:
    """Flat slices of each ``nn.Linear``'s weight and bias, keyed by its name inside
    ``nn.Sequential(module)`` (the wrapper lets a bare ``nn.Linear`` be tracked too)."""
    offsets: dict[str, slice] = {}
    start = 0
    for n, k in zip(names, numels, strict=True):
        offsets[n] = slice(start, start + k)
        start += k
    blocks, used = {}, set()
    for mod_name, mod in module.named_modules():
        if isinstance(mod, nn.Linear):
            prefix = f"{mod_name}." if mod_name else ""
            w, b = f"{prefix}weight", f"{prefix}bias"
            blocks[f"0.{mod_name}" if mod_name else "0"] = (
                offsets[w],
                offsets[b] if mod.bias is not None else None,
                (mod.out_features, mod.in_features),
            )
            used.update({w, b} if mod.bias is not None else {w})
    untracked = [offsets[n] for n in names if n not in used]
    return blocks, untracked


def fit_preconditioner(
    inputs: EstimatorInputs, strategy: Strategy, settings: KronfluenceSettings
) -> Preconditioner:
    """Fit kronfluence's K-FAC or EK-FAC factors of the GNH at θˢ on the training set."""
    from kronfluence.analyzer import prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.factor.covariance import fit_covariance_matrices_with_loader
    from kronfluence.factor.eigen import fit_lambda_matrices_with_loader, perform_eigendecomposition
    from kronfluence.module.utils import (
        get_tracked_module_names,
        prepare_modules,
        set_factors,
        update_score_args,
    )
    from kronfluence.utils.state import State

    problem, theta = inputs.problem, inputs.theta
    if inputs.module is None or problem.spec is None:
        raise ValueError(f"{strategy} needs EstimatorInputs.module and a Problem built from it")
    names = tuple(n for n, _ in inputs.module.named_parameters())
    if names != problem.spec.names:
        raise ValueError(
            f"module parameters {names} do not match problem.spec {problem.spec.names}"
        )
    dtype, device = theta.dtype, theta.device
    module = load_flat_(copy.deepcopy(inputs.module).to(dtype=dtype, device=device), theta)
    probe = inputs.x_train[:MODULE_CHECK_ROWS]
    with torch.no_grad():
        if not torch.allclose(module(probe), problem.f(theta, probe)):
            raise ValueError("EstimatorInputs.module does not compute problem.f at θˢ")
    blocks, untracked = _layout(module, names, problem.spec.numels)
    if not blocks:
        raise ValueError(f"{strategy} found no nn.Linear layer to fit")
    out_numel = int(problem.f(theta, probe[:1])[0].numel())

    task = _task(problem.loss, settings, out_numel)
    model = prepare_model(nn.Sequential(module), task)
    state = State(cpu=device.type == "cpu")
    if state.device.type != device.type:
        raise ValueError(f"kronfluence runs on {state.device}, θˢ lives on {device}")
    factor_args = FactorArguments(
        strategy=strategy,
        use_empirical_fisher=False,
        activation_covariance_dtype=dtype,
        gradient_covariance_dtype=dtype,
        per_sample_gradient_dtype=dtype,
        lambda_dtype=dtype,
        eigendecomposition_dtype=torch.float64,
    )
    data = torch.utils.data.TensorDataset(inputs.x_train, inputs.t_train)
    loader = torch.utils.data.DataLoader(data, batch_size=settings.batch_size, shuffle=False)
    with warnings.catch_warnings():
        # kronfluence builds a disabled torch.cuda.amp.GradScaler, deprecated in torch ≥ 2.4
        warnings.filterwarnings("ignore", r".*GradScaler", FutureWarning)
        _, cov = fit_covariance_matrices_with_loader(
            model, state, task, loader, factor_args, disable_tqdm=True
        )
        factors = perform_eigendecomposition(cov, model, state, factor_args, disable_tqdm=True)
        if strategy == "ekfac":
            _, lam = fit_lambda_matrices_with_loader(
                model, state, task, loader, factor_args, eigen_factors=factors, disable_tqdm=True
            )
            factors = {**factors, **lam}
    for factor_name, per_module in factors.items():
        set_factors(model, factor_name, per_module)
    isotropic = inputs.damping + problem.weight_decay
    update_score_args(
        model,
        ScoreArguments(
            damping_factor=isotropic,
            precondition_dtype=dtype,
            per_sample_gradient_dtype=dtype,
            score_dtype=dtype,
        ),
    )
    prepare_modules(model, get_tracked_module_names(model), device)
    n_untracked = sum(sl.stop - sl.start for sl in untracked)
    info: dict[str, Any] = {
        "strategy": strategy,
        "fisher": settings.fisher,
        "kronfluence_damping": isotropic,
        "layers": len(blocks),
        "untracked_parameters": n_untracked,
        "curvature": "gnh",
        "warnings": [],
    }
    if n_untracked:
        info["warnings"].append(
            f"{n_untracked} parameters outside nn.Linear get zero curvature ((w+λ)⁻¹ g)"
        )
    if inputs.curvature != "gnh":
        info["warnings"].append("K-FAC/EK-FAC approximate the GNH; curvature='hessian' ignored")
    return Preconditioner(strategy, model, blocks, untracked, isotropic, info)
