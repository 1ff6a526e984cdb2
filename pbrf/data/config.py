"""Data configuration (provisional: the data layer's full version replaces this)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["breast_cancer", "digits", "diabetes"] = "digits"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_size: int | None = Field(None, gt=1)
    standardize: bool = True
    seed: int = 0
