"""Data sets as tensors: registry, config, loaders and splits (the only part of ``pbrf`` that
reads data files). Downloads live in ``tasks/datafetch.py``."""

from pbrf.data.bundled import BUNDLED_TASKS, raw_arrays
from pbrf.data.config import DataConfig
from pbrf.data.dataset import Dataset
from pbrf.data.errors import DataFilesMissingError, MalformedDataError, fetch_command
from pbrf.data.load import check_files, load_dataset, required_files
from pbrf.data.registry import (
    DATASET_NAMES,
    LOSS_OF_TASK,
    SPECS,
    DatasetSpec,
    DataSignature,
    get_spec,
    signature,
)
from pbrf.data.sizes import SplitSizes, split_sizes
from pbrf.data.tabular import split_dataset

__all__ = [
    "BUNDLED_TASKS",
    "DATASET_NAMES",
    "LOSS_OF_TASK",
    "SPECS",
    "DataConfig",
    "DataFilesMissingError",
    "DataSignature",
    "Dataset",
    "DatasetSpec",
    "MalformedDataError",
    "SplitSizes",
    "check_files",
    "fetch_command",
    "get_spec",
    "load_dataset",
    "raw_arrays",
    "required_files",
    "signature",
    "split_dataset",
    "split_sizes",
]
