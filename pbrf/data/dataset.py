"""``Dataset``: the split tensors of one data set, with its task and output size."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pbrf.data.registry import LOSS_OF_TASK


@dataclass
class Dataset:
    """Train / test (and validation) tensors, one example per leading index.

    ``x_val``/``t_val`` are empty tensors (0 rows) when there is no validation split.
    Targets: ``(N,)`` int64 class labels (multiclass), ``(N, 1)`` float (binary, regression),
    ``(N, pixels)`` float in [0, 1] (reconstruction), ``(N, seq_len)`` int64 token ids
    (language model). ``vocabulary`` lists the words of a text set by id.
    """

    name: str
    x_train: Tensor
    t_train: Tensor
    x_test: Tensor
    t_test: Tensor
    task: str  # a pbrf.data.registry.Task
    output_dim: int
    x_val: Tensor | None = None
    t_val: Tensor | None = None
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x_val is None:
            self.x_val = self.x_train[:0]
        if self.t_val is None:
            self.t_val = self.t_train[:0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_val(self) -> int:
        assert self.x_val is not None
        return self.x_val.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    @property
    def default_loss(self) -> str:
        return LOSS_OF_TASK[self.task]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Dataset:
        """Move to ``device``; floating inputs/targets become ``dtype``, integer ids stay int64."""

        def cast(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        names = ("x_train", "t_train", "x_test", "t_test", "x_val", "t_val")
        return replace(self, **{n: cast(getattr(self, n)) for n in names})
