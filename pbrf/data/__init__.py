"""Data sets as tensors: loaders and splits (the only part of ``pbrf`` that reads data)."""

from pbrf.data.dataset import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
