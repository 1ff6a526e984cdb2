"""Solver settings: the public contract of the iHVP solvers (provisional; see pbrf.solvers)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LissaSettings(_Strict):
    name: Literal["lissa"] = "lissa"
    depth: int = Field(5000, ge=1, description="recursion depth T")
    scale: float | Literal["auto"] = Field("auto", description="σ, or 'auto'")
    scale_factor: float = Field(1.5, gt=1.0, description="auto: σ = factor·(λ_max + λ)")
    repeats: int = Field(1, ge=1, description="repeats R")
    batch_size: int | None = Field(None, ge=1, description="minibatch; None = full data")
    power_iters: int = Field(30, ge=1, description="power iterations for scale='auto'")
    seed: int = Field(0, description="minibatch sampling seed")

    @field_validator("scale")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and not v > 0:
            raise ValueError(f"must be > 0 or 'auto', got {v}")
        return v


class CGSettings(_Strict):
    name: Literal["cg"] = "cg"
    max_iter: int = Field(1000, ge=1)
    tol: float = Field(1e-8, gt=0.0)


class ExactSettings(_Strict):
    name: Literal["exact"] = "exact"
    method: Literal["auto", "primal", "dual"] = "auto"


SolverSettings = Annotated[LissaSettings | CGSettings | ExactSettings, Field(discriminator="name")]
