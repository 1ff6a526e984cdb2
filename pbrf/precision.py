"""The rounding floor of responses: is a removal's effect larger than floating-point spacing?

Removing one of N examples perturbs the objective by ε = 1/N. The resulting parameter
displacement Δ = θ' − θˢ and test-loss change ΔL can be smaller than the spacing of the numbers
that hold them: stored as θˢ + Δ in float32, coordinates with |Δᵢ| under half the local spacing
vanish, and a ΔL of a few units in the last place (ulps) of the test loss is rounding noise.
These functions measure how far above that floor a set of M responses sits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray | Sequence[float] | float

#: A loss change whose median is below this many ulps of the test loss is "at the rounding
#: floor". The test loss is a mean over test examples; evaluating it twice (before and after
#: the removal) and subtracting carries several ulps of accumulated rounding, so a difference of
#: under ~10 ulps has at most one meaningful digit and its sign is not trustworthy.
LOSS_FLOOR_ULPS = 10.0
#: Parameters are "at the rounding floor" when, for the median response, at least this share of
#: coordinates would vanish if the response were stored as θˢ + Δ.
VANISHING_FLOOR = 0.5

__all__ = [
    "LOSS_FLOOR_ULPS",
    "VANISHING_FLOOR",
    "RoundingVerdict",
    "loss_change_ulps",
    "response_ulps",
    "rounding_verdict",
    "ulp",
    "vanishing_fraction",
]


def _tensor(x: ArrayLike) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def ulp(x: ArrayLike, dtype: torch.dtype | None = None) -> Tensor:
    """Spacing of floating-point numbers at ``x`` in ``dtype`` (default: x's own float dtype).

    ``nextafter(|x|, +inf) − |x|`` — the gap to the next number away from zero, as
    ``numpy.spacing``; at a power of two the gap below is half of this. NaN for non-finite x.
    """
    t = _tensor(x)
    t = t.to(dtype) if dtype is not None else (t if t.is_floating_point() else t.double())
    a = t.abs()
    step = torch.nextafter(a, torch.full_like(a, math.inf)) - a
    return torch.where(torch.isfinite(t), step, torch.full_like(step, math.nan))


def _same_device(theta_s: ArrayLike, delta: ArrayLike, dtype: torch.dtype | None):
    th = _tensor(theta_s)
    if not th.is_floating_point():
        th = th.double()
    th = th.to(dtype) if dtype is not None else th
    d = _tensor(delta).to(device=th.device)
    if d.shape[-1:] != th.shape[-1:]:
        raise ValueError(f"delta {tuple(d.shape)} does not end in theta_s's {tuple(th.shape)}")
    return th, d


def _vanishes(theta: Tensor, delta: Tensor) -> Tensor:
    """Whether ``fl(θ + Δ) == θ`` in θ's dtype, Δ taken exactly (compared in float64).

    Round-to-nearest-even: Δ is lost when |Δ| is under half the gap to θ's neighbour on Δ's
    side (at a power of two the gap below is half the one above), and at exactly half when θ's
    last mantissa bit is even.
    """
    toward = torch.where(delta >= 0, math.inf, -math.inf).to(theta.dtype)
    neighbour = torch.nextafter(theta.expand_as(delta), toward)
    half_gap = (neighbour.double() - theta.double()).abs() / 2
    mag = delta.double().abs()
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[theta.element_size()]
    even = (theta.view(bits) & 1) == 0
    return (mag < half_gap) | ((mag == half_gap) & even)


def vanishing_fraction(
    theta_s: ArrayLike, delta: ArrayLike, dtype: torch.dtype | None = None
) -> Tensor:
    """Per response, the share of coordinates lost if stored as θˢ + Δ in ``dtype``.

    ``theta_s`` is ``(d,)``, ``delta`` is ``(M, d)`` or ``(d,)``; θˢ is first rounded to ``dtype``
    (default θˢ's own). A coordinate counts when ``fl(θˢᵢ + Δᵢ) == θˢᵢ``: |Δᵢ| below half the
    local spacing ulp(θˢᵢ) (the finer spacing below a power of two when Δᵢ < 0; ties to even).
    A zero Δᵢ counts as lost. Returns float64 ``(M,)`` (or a 0-d tensor).
    """
    th, d = _same_device(theta_s, delta, dtype)
    return _vanishes(th, d).double().mean(dim=-1)


def response_ulps(theta_s: ArrayLike, delta: ArrayLike, dtype: torch.dtype | None = None) -> Tensor:
    """Per response, ‖Δ‖ / ‖ulp(θˢ)‖: the displacement's size in units of the local spacing.

    About 1 means the response is as large as the rounding of θˢ itself. float64 ``(M,)``.
    """
    th, d = _same_device(theta_s, delta, dtype)
    return d.double().norm(dim=-1) / ulp(th).double().norm()


def loss_change_ulps(change: ArrayLike, base_loss: ArrayLike, dtype: torch.dtype) -> Tensor:
    """|ΔL| / ulp(L) elementwise, ulp taken of the base loss in ``dtype`` (the dtype ΔL was
    computed in). float64, broadcast over ``change`` and ``base_loss``."""
    c = _tensor(change).double()
    unit = ulp(_tensor(base_loss), dtype).double().to(c.device)
    return c.abs() / unit


@dataclass(frozen=True)
class RoundingVerdict:
    """Summary of how far M responses sit above the rounding floor.

    ``loss_ulps_*`` summarize :func:`loss_change_ulps`; ``vanishing_*`` and ``response_ulps_*``
    summarize :func:`vanishing_fraction` / :func:`response_ulps` (NaN when no parameters were
    given). ``loss_at_floor``: median loss change < ``loss_threshold`` ulps. ``params_at_floor``:
    median vanishing fraction ≥ ``vanishing_threshold`` (None without parameters).
    ``at_floor`` is either.
    """

    dtype: str
    m: int
    loss_ulps_min: float
    loss_ulps_median: float
    vanishing_median: float
    vanishing_max: float
    response_ulps_min: float
    response_ulps_median: float
    loss_threshold: float
    vanishing_threshold: float
    loss_at_floor: bool
    params_at_floor: bool | None

    @property
    def at_floor(self) -> bool:
        return self.loss_at_floor or bool(self.params_at_floor)

    def message(self) -> str:
        """One line with the numbers, e.g. for a report or a warning."""
        text = (
            f"{self.dtype}: median test-loss change {self.loss_ulps_median:.3g} ulps "
            f"(min {self.loss_ulps_min:.3g}) of the test loss"
        )
        if self.params_at_floor is not None:
            text += (
                f"; median {self.vanishing_median:.1%} of parameter coordinates below half an "
                f"ulp (max {self.vanishing_max:.1%}), ‖Δ‖ = {self.response_ulps_median:.3g} "
                f"‖ulp(θˢ)‖"
            )
        if self.at_floor:
            return text + (
                f" — at the rounding floor (threshold {self.loss_threshold:g} ulps / "
                f"{self.vanishing_threshold:.0%} vanishing): compute the responses in float64"
            )
        return text + " — above the rounding floor"


def _median(x: Tensor) -> float:
    # the mean of the two middle values for even M (torch.median returns the lower one)
    return float(torch.quantile(x.double().flatten(), 0.5)) if x.numel() else math.nan


def _min(x: Tensor) -> float:
    return float(x.min()) if x.numel() else math.nan


def rounding_verdict(
    change: ArrayLike,
    base_loss: ArrayLike,
    dtype: torch.dtype,
    *,
    theta_s: ArrayLike | None = None,
    delta: ArrayLike | None = None,
    loss_threshold: float = LOSS_FLOOR_ULPS,
    vanishing_threshold: float = VANISHING_FLOOR,
) -> RoundingVerdict:
    """Whether M responses are at the rounding floor of ``dtype``.

    ``change`` (M,) are test-loss changes computed in ``dtype`` from a base test loss
    ``base_loss`` (scalar or (M,)); ``theta_s`` (d,) and ``delta`` (M, d), optional, add the
    parameter-side measures. Thresholds: :data:`LOSS_FLOOR_ULPS`, :data:`VANISHING_FLOOR`.
    """
    lu = loss_change_ulps(change, base_loss, dtype).flatten()
    loss_med = _median(lu)
    if (theta_s is None) != (delta is None):
        raise ValueError("give both theta_s and delta, or neither")
    if theta_s is not None and delta is not None:
        vf = vanishing_fraction(theta_s, delta, dtype).flatten()
        ru = response_ulps(theta_s, delta, dtype).flatten()
        vf_med, vf_max = _median(vf), float(vf.max()) if vf.numel() else math.nan
        ru_min, ru_med = _min(ru), _median(ru)
        params: bool | None = bool(vf_med >= vanishing_threshold)
    else:
        vf_med = vf_max = ru_min = ru_med = math.nan
        params = None
    return RoundingVerdict(
        dtype=str(dtype).removeprefix("torch."),
        m=lu.numel(),
        loss_ulps_min=_min(lu),
        loss_ulps_median=loss_med,
        vanishing_median=vf_med,
        vanishing_max=vf_max,
        response_ulps_min=ru_min,
        response_ulps_median=ru_med,
        loss_threshold=loss_threshold,
        vanishing_threshold=vanishing_threshold,
        loss_at_floor=bool(loss_med < loss_threshold),
        params_at_floor=params,
    )
