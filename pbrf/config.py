"""Typed, validated configuration of a study (pydantic). Bad values name their field.

A :class:`StudyConfig` fully determines a run: data, model, base training, the retraining of the
five variants of Table 1 and the influence estimate. Its :meth:`StudyConfig.section_hash`
fingerprints each step's inputs so artifacts can be checked against the config that made them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pbrf.models import MODEL_NAMES

Variant = Literal["cold", "warm", "proximal", "pbrf", "linearized_pbrf"]
VARIANTS: tuple[str, ...] = ("cold", "warm", "proximal", "pbrf", "linearized_pbrf")

# Size of the bundled scikit-learn data sets, so that impossible removal counts fail at
# validation time rather than after training.
DATASET_SIZES: dict[str, int] = {"breast_cancer": 569, "digits": 1797, "diabetes": 442}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    name: Literal["breast_cancer", "digits", "diabetes"] = "digits"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_size: int | None = Field(
        None, gt=1, description="subsample the training split to this many examples"
    )
    standardize: bool = True
    seed: int = 0

    def n_train(self) -> int | None:
        total = DATASET_SIZES.get(self.name)
        if total is None:
            return self.train_size
        n = total - math.ceil(total * self.test_fraction)  # as sklearn's train_test_split
        return min(n, self.train_size) if self.train_size else n


class ModelConfig(_Strict):
    name: str = "mlp"
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the model builder"
    )
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODEL_NAMES:
            raise ValueError(f"unknown model {v!r}; choose one of {list(MODEL_NAMES)}")
        return v


class TrainConfig(_Strict):
    optimizer: Literal["sgd", "momentum", "adam", "lbfgs"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    epochs: int = Field(100, ge=1, description="K; for L-BFGS the maximum number of iterations")
    batch_size: int | None = Field(128, ge=1, description="None: full batch")
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 strength w, folded into the loss: (w/2)‖θ‖²"
    )
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = Field(1.0, gt=0.0)
    lbfgs_tol: float = Field(1e-10, gt=0.0)
    lbfgs_history: int = Field(20, ge=1)
    seed: int = 0


class RetrainConfig(_Strict):
    num_removals: int = Field(20, ge=1, description="M, the number of removed examples (or groups)")
    group_size: int = Field(1, ge=1, description="examples removed together per model")
    removal_seed: int = 0
    variants: tuple[Variant, ...] = VARIANTS
    epochs_fraction: float = Field(
        0.5, gt=0.0, description="retraining epochs as a fraction of K (Appendix E.2: K/2)"
    )
    pbrf_lr_factor: float = Field(
        0.1,
        gt=0.0,
        description="PBRF / linearized PBRF learning rate = lr × this (Appendix E.3: 1/10)",
    )
    pbrf_epochs: int | None = Field(
        None, ge=1, description="epochs for the two PBRF variants (default: same as the others)"
    )
    shards: int = Field(
        1, ge=1, description="split the M removals into this many independent shards"
    )


class InfluenceConfig(_Strict):
    solver: Literal["lissa", "cg", "exact"] = "lissa"
    curvature: Literal["gnh", "hessian"] = "gnh"
    depth: int = Field(5000, ge=1, description="LiSSA recursion depth T")
    scale: float | Literal["auto"] = "auto"
    scale_factor: float = Field(1.5, gt=1.0, description="scale='auto' uses σ = factor·(λ_max + λ)")
    repeats: int = Field(5, ge=1, description="LiSSA repeats R")
    batch_size: int | None = Field(128, ge=1, description="LiSSA minibatch; None: full data")
    cg_max_iter: int = Field(1000, ge=1)
    cg_tol: float = Field(1e-8, gt=0.0)
    test_points: int = Field(
        100, ge=1, description="test examples whose mean loss change is predicted"
    )
    seed: int = 0

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and v <= 0:
            raise ValueError(f"scale must be > 0 or 'auto', got {v}")
        return v


class StudyConfig(_Strict):
    """Everything one decomposition study needs (Section 6 / Appendix E)."""

    name: str = "study"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    retrain: RetrainConfig = RetrainConfig()
    influence: InfluenceConfig = InfluenceConfig()
    loss: Literal["auto", "squared_error", "cross_entropy", "binary_cross_entropy"] = "auto"
    damping: float = Field(1e-3, gt=0.0, description="λ of the proximal terms and of the iHVP")
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}")
        return v

    @model_validator(mode="after")
    def _removals_fit(self) -> StudyConfig:
        n = self.data.n_train()
        need = self.retrain.num_removals * self.retrain.group_size
        if n is not None and need > n:
            raise ValueError(
                f"retrain.num_removals × retrain.group_size = {need} exceeds the {n} training "
                f"examples of data.name={self.data.name!r}"
            )
        if self.retrain.shards > self.retrain.num_removals:
            raise ValueError(
                f"retrain.shards ({self.retrain.shards}) exceeds retrain.num_removals ({self.retrain.num_removals})"
            )
        return self

    def section_hash(self, *sections: str) -> str:
        """Short SHA-256 of the named sections (e.g. ``"data", "model"``); all when none given."""
        dump = self.model_dump(mode="json")
        picked = {k: dump[k] for k in (sections or tuple(dump))}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]
