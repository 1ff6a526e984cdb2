"""Typed solver failures. Each keeps the numbers that explain it as attributes, and its message
states them: which values went wrong and what relation they had to satisfy."""

from __future__ import annotations


class LissaDivergenceError(FloatingPointError):
    """LiSSA's iterates left the bound a convergent series obeys (or became non-finite).

    The series of Eq. 51 converges only when ``σ > (λ_max + λ)/2`` (without overshoot when
    ``σ > λ_max + λ``); a minibatch curvature (Eq. 52) can exceed the full-data ``λ_max`` that
    ``σ`` was set from.
    """

    def __init__(
        self,
        *,
        step: int,
        depth: int,
        repeat: int,
        ratio: float,
        bound: float,
        scale: float,
        damping: float,
        top_eigenvalue: float | None,
        rhs: tuple[int, ...],
    ) -> None:
        self.step = step
        self.depth = depth
        self.repeat = repeat
        self.ratio = ratio
        self.bound = bound
        self.scale = scale
        self.damping = damping
        self.top_eigenvalue = top_eigenvalue
        self.rhs = rhs
        shown = list(rhs[:5]) + (["…"] if len(rhs) > 5 else [])
        if top_eigenvalue is None:
            cause = (
                "λ_max was not estimated; the series needs σ > (λ_max + λ)/2, so σ is likely "
                "below half the curvature's largest eigenvalue plus the damping"
            )
        elif scale <= (top_eigenvalue + damping) / 2:
            cause = (
                f"σ ≤ (λ_max + λ)/2 = {(top_eigenvalue + damping) / 2:.4g}: the series needs "
                "σ > (λ_max + λ)/2"
            )
        elif scale <= top_eigenvalue + damping:
            cause = (
                f"σ is above (λ_max + λ)/2 = {(top_eigenvalue + damping) / 2:.4g}, where the "
                "full-data series converges with overshoot, but a sampled minibatch's curvature "
                "(or an underestimated λ_max) exceeded 2σ − λ"
            )
        else:
            cause = (
                f"σ exceeds the estimate λ_max + λ = {top_eigenvalue + damping:.4g}, so a "
                "sampled minibatch's curvature (or an underestimated λ_max) exceeded σ"
            )
        super().__init__(
            f"LiSSA diverged at step {step} of {depth} (repeat {repeat}): ‖h_t‖/‖v‖ = "
            f"{ratio:.3g} exceeds the bound {bound:.3g} for right-hand side(s) {shown}. "
            f"Scale σ = {scale:.4g}, damping λ = {damping:g}, top eigenvalue λ_max = "
            f"{'not estimated' if top_eigenvalue is None else f'{top_eigenvalue:.4g}'}; {cause}."
        )

    def __reduce__(self):  # keep the attributes when pickled (e.g. across processes)
        return (_rebuild, (type(self), self.__dict__.copy()))

    def fields(self) -> dict:
        """The keyword arguments that rebuild this divergence (for a more specific error)."""
        keys = ("step", "depth", "repeat", "ratio", "bound", "scale", "damping")
        return {k: getattr(self, k) for k in (*keys, "top_eigenvalue", "rhs")}


class LissaGridDivergenceError(LissaDivergenceError):
    """``scale='grid'`` (Appendix E.3's procedure) found no σ of the grid whose series stays
    bounded. The other attributes describe the divergence at the grid's largest σ."""

    def __init__(self, *, grid: tuple[float, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid = tuple(grid)
        shown = ", ".join(f"{g:g}" for g in self.grid)
        self.args = (
            f"LiSSA diverged at every scale of the grid {{{shown}}}; at the largest: "
            f"{self.args[0]} Raise the damping, or add larger values to scale_grid.",
        )


class HessianDivergenceError(LissaDivergenceError):
    """LiSSA diverged on the Hessian (Tables 4, 7) because it is indefinite: an eigenvalue
    ``λ_min`` below ``−λ`` makes ``1 − (λ_min + λ)/σ > 1``, so the series grows along that
    direction by that factor per step whatever the scale σ. Only ``λ > −λ_min`` converges; a
    larger σ merely slows the growth (and shortens the horizon T/σ).
    ``min_eigenvalue`` is a power-iteration estimate (``None`` when it could not be made)."""

    def __init__(self, *, min_eigenvalue: float | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_eigenvalue = min_eigenvalue
        damping, top = kwargs["damping"], kwargs["top_eigenvalue"]
        if min_eigenvalue is not None and min_eigenvalue + damping < 0:
            why = (
                f"the Hessian is indefinite: its most negative eigenvalue λ_min ≈ "
                f"{min_eigenvalue:.4g} lies below −λ = {-damping:.4g}, so the series grows along "
                f"it by (1 + {-(min_eigenvalue + damping):.3g}/σ) per step; it converges only "
                f"for damping λ > {-min_eigenvalue:.3g} (a larger σ only slows the growth)"
            )
        else:
            why = (
                "the curvature is the Hessian, which can be indefinite: the series converges "
                "only when σ > λ_max + λ and every eigenvalue exceeds −λ"
            )
        self.args = (
            f"LiSSA diverged on the Hessian at step {self.step} of {self.depth} (repeat "
            f"{self.repeat}): ‖h_t‖/‖v‖ = {self.ratio:.3g} exceeds the bound {self.bound:.3g}. "
            f"Scale σ = {self.scale:.4g}, damping λ = {damping:g}, top eigenvalue λ_max = "
            f"{'not estimated' if top is None else f'{top:.4g}'}; {why}.",
        )


class NonPositiveScaleError(ValueError):
    """``scale='auto'`` gave σ = scale_factor·(λ_max + λ) ≤ 0: the top-eigenvalue estimate plus
    the damping is not positive (power iteration returns the eigenvalue of largest magnitude,
    negative when the Hessian's most negative eigenvalue dominates)."""

    def __init__(self, *, top_eigenvalue: float, damping: float, scale_factor: float) -> None:
        self.top_eigenvalue = top_eigenvalue
        self.damping = damping
        self.scale_factor = scale_factor
        super().__init__(
            f"LiSSA's scale='auto' sets σ = scale_factor · (λ_max + λ) = {scale_factor:g} · "
            f"({top_eigenvalue:.4g} + {damping:g}) ≤ 0: the curvature's eigenvalue estimate "
            f"λ_max = {top_eigenvalue:.4g} plus the damping λ = {damping:g} is not positive "
            "(a negative estimate means the curvature — the Hessian — is indefinite)"
        )

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy()))


class NotPositiveDefiniteError(ValueError):
    """Conjugate gradients met a direction ``p`` with ``pᵀ(C + λI)p ≤ 0``: the damped
    curvature is not positive definite, so Eq. 50 has no minimizer."""

    def __init__(
        self, *, curvature: float, damping: float, iteration: int, rhs: tuple[int, ...]
    ) -> None:
        self.curvature = curvature
        self.damping = damping
        self.iteration = iteration
        self.rhs = rhs
        super().__init__(
            f"conjugate gradients: the damped curvature is not positive definite — at iteration "
            f"{iteration}, right-hand side(s) {list(rhs[:5])} met a direction p with "
            f"pᵀ(C + λI)p / pᵀp = {curvature:.4g} ≤ 0 (damping λ = {damping:g}); the undamped "
            f"curvature has an eigenvalue ≤ {curvature - damping:.4g}, so λ must exceed "
            f"{damping - curvature:.4g} for this direction"
        )

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[Exception], state: dict) -> Exception:
    return cls(**{k: v for k, v in state.items() if not k.startswith("_")})
