"""Settings of the three iHVP solvers (Appendix D): the library's public, validated contract.

Each model is frozen, rejects unknown keys, and carries a ``name`` that discriminates the
:data:`SolverSettings` union, so a plain mapping such as ``{"name": "cg", "tol": 1e-10}``
validates into the right type (``SOLVER_SETTINGS.validate_python(mapping)``).

Values that are impossible, or that would be silently ignored, are rejected with a message that
names the field. A setting that only matters in another mode (``scale_factor`` with a fixed
``scale``, ``seed`` without minibatches, …) may keep its default — so a dumped model always
validates again — but any other value is an error.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _no_bool(value: Any, info: ValidationInfo) -> Any:
    # pydantic's lax mode reads True as 1; a boolean is never a count or a tolerance here.
    if isinstance(value, bool):
        raise ValueError(f"{info.field_name} must be a number, got {value!r}")
    return value


SCALE_GRID = (10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0)
"""The σ Appendix E.3 tuned LiSSA's scale over "so that the algorithm converges"."""


class LissaSettings(_Settings):
    """LiSSA, the truncated Neumann series of Eq. 51 averaged over repeats (Eq. 52)."""

    name: Literal["lissa"] = Field("lissa", description="discriminator: the LiSSA solver")
    depth: int = Field(
        5000, ge=1, description="recursion depth T of Eq. 51 (curvature products per repeat)"
    )
    scale: float | Literal["auto", "grid"] = Field(
        "auto",
        description=(
            "σ of Eq. 51, > 0; the series converges only when σ > (λ_max + λ)/2, without "
            "overshoot when σ > λ_max + λ. 'auto' sets "
            "σ = scale_factor · (λ_max + λ) from a top-eigenvalue estimate; 'grid' runs "
            "Appendix E.3's procedure: the smallest σ of scale_grid whose recursion does not "
            "diverge"
        ),
    )
    scale_grid: tuple[float, ...] = Field(
        SCALE_GRID,
        min_length=1,
        description="with scale='grid': the σ tried, smallest first (Appendix E.3's grid)",
    )
    scale_factor: float = Field(
        1.5,
        gt=1.0,
        allow_inf_nan=False,
        description="with scale='auto': σ = scale_factor · (λ_max + λ); ignored otherwise",
    )
    repeats: int = Field(
        1,
        ge=1,
        description="R of Eq. 52: independent minibatch recursions averaged (needs batch_size)",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="examples per sampled minibatch curvature of Eq. 52; None: the full data",
    )
    power_iters: int = Field(
        30,
        ge=1,
        description="power iterations estimating λ_max for scale='auto' (unless one is given)",
    )
    seed: int = Field(0, ge=0, description="seed of the minibatch sampling only (needs batch_size)")

    _numbers = field_validator(
        "depth",
        "scale",
        "scale_factor",
        "repeats",
        "batch_size",
        "power_iters",
        "seed",
        mode="before",
    )(_no_bool)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            return v
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"scale must be a finite number > 0, 'auto' or 'grid', got {v!r}")
        return v

    @field_validator("scale_grid")
    @classmethod
    def _grid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (math.isfinite(x) and x > 0) for x in v):
            raise ValueError(f"scale_grid must hold finite numbers > 0, got {list(v)}")
        if len(set(v)) != len(v):
            raise ValueError(f"scale_grid repeats a value: {list(v)}")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _no_ignored_values(self) -> LissaSettings:
        fields = type(self).model_fields
        if self.scale != "auto":
            for key in ("scale_factor", "power_iters"):
                if getattr(self, key) != fields[key].default:
                    raise ValueError(
                        f"{key}={getattr(self, key)!r} is only used with scale='auto', but "
                        f"scale={self.scale!r}"
                    )
        if self.scale != "grid" and self.scale_grid != fields["scale_grid"].default:
            raise ValueError(
                f"scale_grid={list(self.scale_grid)} is only used with scale='grid', but "
                f"scale={self.scale!r}"
            )
        if self.batch_size is None:
            if self.repeats != 1:
                raise ValueError(
                    f"repeats={self.repeats} would average identical runs: with "
                    "batch_size=None every recursion uses the full data and is deterministic"
                )
            if self.seed != fields["seed"].default:
                raise ValueError(
                    f"seed={self.seed} is only used to sample minibatches, but batch_size=None "
                    "uses the full data"
                )
        return self


class CGSettings(_Settings):
    """Conjugate gradients on the damped curvature (Eq. 50), all right-hand sides at once."""

    name: Literal["cg"] = Field("cg", description="discriminator: the conjugate-gradient solver")
    max_iter: int = Field(1000, ge=1, description="iteration limit (one curvature product each)")
    tol: float = Field(
        1e-8,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="stop when every relative residual ‖v − (C + λI)x‖ / ‖v‖ is ≤ tol",
    )

    _numbers = field_validator("max_iter", "tol", mode="before")(_no_bool)


class ExactSettings(_Settings):
    """A direct float64 solve, whatever the model's dtype: the reference for small models."""

    name: Literal["exact"] = Field("exact", description="discriminator: the direct solver")
    method: Literal["auto", "primal", "dual"] = Field(
        "auto",
        description=(
            "'primal': Cholesky of the d×d damped curvature; 'dual': Woodbury through the "
            "(N·r)×(N·r) kernel of the Gauss-Newton factor (GNH only); 'auto': dual when "
            "N·r < d, r ≤ C the rank of the output Hessian, else primal"
        ),
    )


SolverSettings = Annotated[LissaSettings | CGSettings | ExactSettings, Field(discriminator="name")]
"""Any solver's settings; ``name`` says which."""

SOLVER_SETTINGS: TypeAdapter[LissaSettings | CGSettings | ExactSettings] = TypeAdapter(
    SolverSettings
)
"""Validates a mapping (or JSON) into the matching settings model."""
