"""``load_dataset``: the one entry point from a :class:`DataConfig` to split tensors.

Loading reads files and never writes: no cache, no download (``pbrf data fetch`` downloads).
A missing file raises :class:`DataFilesMissingError` naming every missing path and the fetch
command; a malformed one raises :class:`MalformedDataError`.
"""

from __future__ import annotations

from pathlib import Path

from pbrf.data.bundled import raw_arrays
from pbrf.data.config import DataConfig
from pbrf.data.dataset import Dataset
from pbrf.data.errors import DataFilesMissingError
from pbrf.data.registry import get_spec
from pbrf.data.tabular import split_dataset


def required_files(name: str, root: Path | str) -> list[Path]:
    """Paths data set ``name`` reads under ``root`` (empty for bundled sets)."""
    return [Path(root) / f for f in get_spec(name).files]


def check_files(name: str, root: Path | str) -> list[Path]:
    """The required paths; :class:`DataFilesMissingError` listing every one that is missing."""
    paths = required_files(name, root)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataFilesMissingError(name, root, missing)
    return paths


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split, subsample and scale the data set ``cfg`` describes."""
    spec = get_spec(cfg.name)
    if spec.bundled:
        return split_dataset(*raw_arrays(cfg.name)[:2], spec.task, cfg)
    paths = check_files(cfg.name, cfg.root)
    if spec.kind == "image":
        from pbrf.data.images import load_images  # lazy: imports torchvision

        return load_images(cfg, Path(cfg.root))
    if spec.kind == "text":
        from pbrf.data.text import load_ptb

        return load_ptb(cfg, Path(cfg.root))
    from pbrf.data.uci import READERS

    x, t = READERS[cfg.name](paths[0])
    return split_dataset(x, t, spec.task, cfg)
