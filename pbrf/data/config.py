"""``DataConfig``: which data set to load and how to split it (pydantic; bad values name the field).

Data sets (see :mod:`pbrf.data.registry` for shapes, sizes and sources):

* ``breast_cancer``, ``digits``, ``diabetes`` — scikit-learn's bundled copies (no files).
* ``wdbc`` — UCI breast cancer read from the published ``wdbc.data``; the same content as
  ``breast_cancer`` and, under the same config, the same tensors.
* ``pima_diabetes`` — the binary "Diabetes" classification set of the paper's logistic
  regression row. The UCI collection's diabetes classification set is the Pima Indians
  diabetes database (768 × 8, onset of diabetes within five years); scikit-learn's bundled
  ``diabetes`` is a regression set and cannot be that row.
* ``concrete`` (compressive strength) and ``energy`` — UCI regression sets; inputs and targets
  standardized. ``energy`` predicts the heating load ``Y1`` (the paper names no target; Y1 is
  the first of the two published targets and the one most studies use).
* ``mnist``, ``fashion_mnist``, ``cifar10`` — images in [0, 1], shape (C, H, W); with
  ``target="input"`` an image set becomes reconstruction (the MNIST autoencoder).
* ``ptb`` — Penn Treebank words; sequences of ``seq_len`` token ids.

A setting that would have no effect on the chosen data set must keep its default (a config
never carries a value that silently does nothing): ``test_fraction`` for sets with an
official test split, ``validation_fraction`` and ``standardize`` for ``ptb`` (its validation
split is ``ptb.valid.txt``; token ids are never standardized), ``seq_len`` for non-text sets.
``root`` is accepted, and ignored, for the bundled sets. ``target="input"`` needs an image set
and ``standardize=False`` (reconstruction inputs and targets stay in [0, 1]). The training
split is reduced in the order ``fraction`` → ``validation_fraction`` → ``train_size``
(:mod:`pbrf.data.sizes`); a setting that leaves a split empty is rejected here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pbrf.data.registry import DataSignature, get_spec, signature
from pbrf.data.sizes import SplitSizes, split_sizes

DatasetName = Literal[
    "breast_cancer",
    "digits",
    "diabetes",
    "mnist",
    "mnist_5k",
    "fashion_mnist",
    "cifar10",
    "concrete",
    "energy",
    "pima_diabetes",
    "wdbc",
    "ptb",
]


class DataConfig(BaseModel):
    """Which data set to load, from where, and how to split, subsample and scale it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: DatasetName = Field("digits", description="registered data set (pbrf.data.registry)")
    root: str = Field(
        "data", description="directory holding the data files (ignored by bundled sets)"
    )
    fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="keep this fraction of the training split (seeded); the paper's 10% of MNIST",
    )
    train_size: int | None = Field(
        None, gt=1, description="cap on training examples, applied after fraction and validation"
    )
    validation_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of the kept training split held out (seeded)"
    )
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="held-out test fraction, only for sets without an official test split",
    )
    test_size: int | None = Field(None, ge=1, description="cap on test examples (seeded subset)")
    standardize: bool = Field(
        True,
        description="zero-mean unit-variance inputs (per channel for images) and regression "
        "targets, with training-split statistics",
    )
    target: Literal["label", "input"] = Field(
        "label", description="'input': reconstruct an image set's pixels in [0, 1] (autoencoder)"
    )
    seq_len: int = Field(35, ge=1, description="tokens per text example (ptb)")
    seed: int = Field(0, ge=0, description="seed of every split and subset")

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        spec = get_spec(self.name)
        if self.target == "input" and spec.kind != "image":
            raise ValueError(
                f"target='input' needs an image data set; {self.name!r} is {spec.kind}"
            )
        if self.target == "input" and self.standardize:
            raise ValueError(
                "standardize must be false with target='input': reconstruction inputs and "
                "targets stay in [0, 1]"
            )
        unused = []
        if spec.has_official_test:
            unused.append("test_fraction")
        if spec.kind == "text":
            unused += ["validation_fraction", "standardize"]
        else:
            unused.append("seq_len")
        for field in unused:
            default = type(self).model_fields[field].default
            if getattr(self, field) != default:
                raise ValueError(
                    f"{field}={getattr(self, field)!r} has no effect on {self.name!r}; "
                    f"leave it at {default!r}"
                )
        split_sizes(self)  # raises, naming the field, when a split would be empty
        return self

    def sizes(self) -> SplitSizes:
        """Train / validation / test sizes of the published data under this config."""
        return split_sizes(self)

    def n_train(self) -> int:
        """Number of training examples (what removal counts must fit in)."""
        return split_sizes(self).train

    def signature(self) -> DataSignature:
        """Task, input shape, output size and default loss (for model compatibility checks)."""
        return signature(self)
