"""Data sets as tensors: loaders and splits (the only part of ``pbrf`` that reads data)."""

from pbrf.data.dataset import BUNDLED_TASKS, Dataset, load_dataset, raw_arrays, split_dataset

__all__ = ["BUNDLED_TASKS", "Dataset", "load_dataset", "raw_arrays", "split_dataset"]
