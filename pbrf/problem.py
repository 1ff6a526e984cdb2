"""The training problem: network f(θ, x), output loss L(y, t) and L2 regularization.

Following Section 3 of the paper, the regularizer is folded into the per-example loss:

    ℓ_i(θ) = L(f(θ, x_i), t_i) + (w/2)‖θ‖²,        J(θ) = (1/N) Σ_i ℓ_i(θ)        (Eq. 1)

so that downweighting an example (Eq. 2) also downweights its share of the regularizer, and
J − ℓ_z/N is exactly (N−1)/N times the regularized cost of the data set without z: the
leave-one-out optimum is the optimum of Eq. 2 at ε = 1/N.

Keeping outputs, loss-on-outputs and regularization apart is what the Bregman (Eq. 8) and
Gauss-Newton (Eq. 6) terms need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torch.func import functional_call

from pbrf.losses import OutputLoss
from pbrf.params import ParamSpec, functional_model

ModelFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Problem:
    """``f(θ, x)`` with θ a flat vector ``(d,)``, a loss convex in ``y``, and weight decay ``w``."""

    f: ModelFn
    loss: OutputLoss
    weight_decay: float = 0.0
    spec: ParamSpec | None = None
    # f on a name → tensor dict (the layout of ``spec``): lets a caller differentiate with
    # respect to each parameter tensor, skipping the flat vector's gather (pbrf.kernels)
    f_params: Callable[[dict[str, Tensor], Tensor], Tensor] | None = None

    @classmethod
    def from_module(cls, module: nn.Module, loss: OutputLoss, weight_decay: float = 0.0) -> Problem:
        f, spec = functional_model(module)

        def f_params(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(module, params, (x,))

        return cls(f=f, loss=loss, weight_decay=weight_decay, spec=spec, f_params=f_params)

    def outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        return self.f(theta, x)

    def regularizer(self, theta: Tensor) -> Tensor:
        """``(w/2)‖θ‖²``."""
        return 0.5 * self.weight_decay * (theta * theta).sum()

    def example_losses(self, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """``ℓ_i(θ) = L(f(θ, x_i), t_i) + (w/2)‖θ‖²`` for each example, shape ``(B,)``."""
        return self.loss(self.f(theta, x), t) + self.regularizer(theta)

    def cost(self, theta: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """``J(θ)`` over the given examples (Eq. 1)."""
        return self.example_losses(theta, x, t).mean()
