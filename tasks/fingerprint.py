"""What each step depends on: config keys, code, and input files — hashed.

``STEP_KEYS[step]`` lists the (dotted) config keys a step's outputs depend on, transitively:
a step's key list contains those of its inputs, so a changed value invalidates exactly the
steps downstream of it. These lists are the single source for

* the ``config_hash`` stored in every artifact and checked on load (:mod:`tasks.artifacts`),
* the Prefect cache key (:mod:`tasks.prefect_tasks`),
* the ``params:`` of the DVC stages in ``dvc.yaml`` (a test checks they agree).

``device`` and ``name`` are deliberately absent from the computational steps: where a result was
computed does not change what it means (use ``pbrf run --refresh`` to recompute on another
device); ``retrain.shards`` and ``retrain.variants`` do not change any single variant's result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pbrf.config import StudyConfig

STEPS: tuple[str, ...] = (
    "prepare",
    "train_base",
    "select",
    "retrain",
    "influence",
    "aggregate",
    "report",
)

_PREPARE = ("data",)
_BASE = (*_PREPARE, "model", "train", "loss", "dtype")
_SELECT_OWN = (
    "retrain.num_removals",
    "retrain.group_size",
    "retrain.removal_seed",
    "influence.test_points",
    "influence.seed",
)
_RETRAIN_OWN = (
    "retrain.epochs_fraction",
    "retrain.pbrf_lr_factor",
    "retrain.pbrf_epochs",
    "damping",
)
_ALL = ("data", "model", "train", "retrain", "influence", "loss", "damping", "dtype")

STEP_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": _PREPARE,
    "train_base": _BASE,
    "select": (*_PREPARE, *_SELECT_OWN),
    "retrain": (*_BASE, *_SELECT_OWN, *_RETRAIN_OWN),
    "influence": (*_BASE, *_SELECT_OWN, "influence", "damping"),
    "aggregate": _ALL,
    "report": (*_ALL, "name"),
}


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def config_hash(cfg: StudyConfig, step: str) -> str:
    """Short SHA-256 of the config values ``step`` depends on (see :data:`STEP_KEYS`)."""
    if step not in STEP_KEYS:
        raise ValueError(f"unknown step {step!r}; choose one of {STEPS}")
    dump = cfg.model_dump(mode="json")
    picked = {key: _lookup(dump, key) for key in STEP_KEYS[step]}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path, pattern: str = "*.py") -> str:
    """SHA-256 over the relative paths and bytes of the files matching ``pattern`` under ``root``."""
    h = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


def source_roots() -> tuple[Path, ...]:
    """The source trees whose code decides every artifact: the ``pbrf`` library and ``tasks``."""
    return (_package_dir("pbrf"), _package_dir("tasks"))


def code_hash(roots: Iterable[Path] | None = None) -> str:
    """SHA-256 of the ``pbrf`` and ``tasks`` source files (by default, :func:`source_roots`).

    Prefect's ``TASK_SOURCE`` policy only sees the decorated function's own source; a change
    anywhere in the library must invalidate the cache too, so the cache key uses this instead.
    Reading ~40 small files takes about a millisecond, so it is recomputed on every call.
    """
    digests = [tree_digest(r) for r in (source_roots() if roots is None else roots)]
    return hashlib.sha256("".join(digests).encode()).hexdigest()
