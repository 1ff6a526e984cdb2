"""Small files in the published on-disk formats of every file-based data set, for tests.

Each writer reproduces the real format in structure (IDX headers and magic numbers, Python-2
pickled CIFAR batches, .xls/.xlsx with the published headers, the UCI text files, Mikolov's PTB
lines). :func:`write_study_files` writes one small copy of every file-based set under a root, with
a learnable signal (labels that depend on the inputs), for running whole studies offline: the
files are synthetic, so such a run exercises the pipeline, not the paper's science.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file of unsigned bytes: magic 0x0000080N (N = dims), big-endian sizes, then data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(
        struct.pack(">I", s) for s in array.shape
    )
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def id_images(rng: np.random.Generator, n: int, shape: tuple[int, ...], start: int) -> np.ndarray:
    """Random uint8 images whose first pixel is a unique id (start + i) to trace selection."""
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(start, start + n)
    return x


def write_mnist(root: Path, folder: str, n_train: int = 24, n_test: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = {}
    for stem, n, start in (("train", n_train, 0), ("t10k", n_test, 100)):
        x = id_images(rng, n, (28, 28), start)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{stem}-images-idx3-ubyte", x)
        write_idx(root / folder / "raw" / f"{stem}-labels-idx1-ubyte", y)
        out[stem] = (x, y)
    return out


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles like Python 2's cPickle (protocol 2): bytes become ``str`` opcodes and numpy
    functions are referenced as ``numpy.core.multiarray``, as in the published CIFAR files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        op = (
            pickle.SHORT_BINSTRING + bytes([n])
            if n < 256
            else pickle.BINSTRING + struct.pack("<i", n)
        )
        self.write(op + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if getattr(obj, "__module__", "").startswith("numpy._core"):
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


CIFAR_CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0):
    """The six batches and ``batches.meta`` of ``cifar-10-batches-py``; returns (N, 3072) rows."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = id_images(rng, n, (3072,), 10 * k)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {
            b"batch_label": f"{name} of test".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{k}_{i}.png".encode() for i in range(n)],
        }
        (d / name).write_bytes(py2_pickle(batch))
        out[name] = (data, np.array(labels))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CIFAR_CLASSES, b"num_vis": 3072}
    (d / "batches.meta").write_bytes(py2_pickle(meta))
    return out


CONCRETE_HEADER = [
    "Cement (component 1)(kg in a m^3 mixture)",
    "Blast Furnace Slag (component 2)(kg in a m^3 mixture)",
    "Fly Ash (component 3)(kg in a m^3 mixture)",
    "Water  (component 4)(kg in a m^3 mixture)",
    "Superplasticizer (component 5)(kg in a m^3 mixture)",
    "Coarse Aggregate  (component 6)(kg in a m^3 mixture)",
    "Fine Aggregate (component 7)(kg in a m^3 mixture)",
    "Age (day)",
    "Concrete compressive strength(MPa, megapascals) ",
]
ENERGY_HEADER = ["X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "Y1", "Y2"]


def write_xls(path: Path, rows: list[list[Any]]) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is not None:
                sheet.write(r, c, v)
    book.save(str(path))


def write_xlsx(path: Path, rows: list[list[Any]], blank_margin: bool = True) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    for row in rows:
        sheet.append(row)
    if blank_margin:  # the published ENB2012_data.xlsx has blank cells past the table
        sheet.cell(row=len(rows) + 5, column=len(rows[0]) + 2, value="")
    book.save(path)


def uci_table(n: int, d: int, seed: int, decimals: int = 2) -> np.ndarray:
    """Distinct rows of positive values with a few decimals (as the UCI files have)."""
    rng = np.random.default_rng(seed)
    t = np.round(rng.uniform(1, 500, size=(n, d)), decimals)
    t[:, 0] = np.arange(n) + 0.5  # unique first column to find rows again
    return t


def write_pima(path: Path, table: np.ndarray) -> None:
    lines = [",".join(_fmt(v) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def write_wdbc(path: Path, ids: np.ndarray, benign: np.ndarray, x: np.ndarray) -> None:
    lines = [
        ",".join([str(int(i)), "B" if b else "M", *(_fmt(v) for v in row)])
        for i, b, row in zip(ids, benign, x, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def write_ptb(root: Path, train: str, valid: str, test: str) -> None:
    """Mikolov's format: a leading space, space-separated words, a space before the newline."""
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        lines = [line for line in text.strip("\n").split("\n")]
        (root / f"ptb.{split}.txt").write_text("".join(f" {line} \n" for line in lines))


# --------------------------------------------------------------------------- whole studies


def class_images(
    rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...], classes: int = 10
) -> np.ndarray:
    """uint8 images that carry their label: a fixed random prototype per class plus noise."""
    protos = rng.uniform(0, 255, size=(classes, *shape))
    noise = rng.uniform(0, 255, size=(labels.size, *shape))
    return np.clip(0.7 * protos[labels] + 0.3 * noise, 0, 255).astype(np.uint8)


def write_idx_set(root: Path, folder: str, n_train: int, n_test: int, seed: int) -> None:
    """An MNIST-format set (``<folder>/raw/*-idx?-ubyte``) of learnable 28×28 images."""
    rng = np.random.default_rng(seed)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(
            root / folder / "raw" / f"{stem}-images-idx3-ubyte", class_images(rng, y, (28, 28))
        )
        write_idx(root / folder / "raw" / f"{stem}-labels-idx1-ubyte", y)


def write_cifar_set(root: Path, per_batch: int, n_test: int, seed: int) -> None:
    """``cifar-10-batches-py`` with learnable 3×32×32 images (rows of 3072 bytes)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    protos = rng.uniform(0, 255, size=(10, 3072))
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, size=n)
        data = np.clip(0.7 * protos[labels] + 0.3 * rng.uniform(0, 255, (n, 3072)), 0, 255)
        batch = {
            b"batch_label": f"{name} of test".encode(),
            b"labels": [int(v) for v in labels],
            b"data": data.astype(np.uint8),
            b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
        }
        (d / name).write_bytes(py2_pickle(batch))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CIFAR_CLASSES, b"num_vis": 3072}
    (d / "batches.meta").write_bytes(py2_pickle(meta))


def regression_table(n: int, d_in: int, d_out: int, seed: int) -> np.ndarray:
    """Positive inputs with two decimals and targets a smooth function of them plus noise."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(1, 100, size=(n, d_in)), 2)
    w = rng.normal(size=(d_in, d_out))
    z = (x - 50) / 30
    y = np.tanh(z) @ w + 0.1 * rng.normal(size=(n, d_out))
    return np.concatenate([x, np.round(y - y.min() + 1, 3)], axis=1)


def write_ptb_set(root: Path, tokens: tuple[int, int, int], vocab: int, seed: int) -> None:
    """``ptb.{train,valid,test}.txt`` from a noisy word chain (next ≈ 3·word + 1 mod V)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab - 2)] + ["<unk>", "N"]
    texts = []
    for k, count in enumerate(tokens):
        ids, w = [], int(rng.integers(vocab))
        for _ in range(count):
            ids.append(w)
            w = (3 * w + 1) % vocab if rng.random() < 0.8 else int(rng.integers(vocab))
        if k == 0:  # every word occurs in training, so valid/test hold no unknown word
            ids = list(range(vocab)) + ids
        cuts = np.sort(rng.choice(np.arange(1, len(ids)), size=len(ids) // 12, replace=False))
        lines = [" ".join(words[i] for i in part) for part in np.split(np.array(ids), cuts)]
        texts.append("\n".join(line for line in lines if line))
    write_ptb(root, *texts)


def write_study_files(root: Path, n_train: int = 96, n_test: int = 48, seed: int = 0) -> Path:
    """Every file-based set under ``root`` in its published format, about ``n_train`` training
    and ``n_test`` test examples each (enough for every preset's ``smoke`` scale)."""
    root.mkdir(parents=True, exist_ok=True)
    write_idx_set(root, "MNIST", n_train, n_test, seed)
    write_idx_set(root, "FashionMNIST", n_train, n_test, seed + 1)
    write_idx_set(root, "mnist_5k", n_train, n_test, seed + 7)
    write_cifar_set(root, -(-n_train // 5), n_test, seed + 2)
    n_rows = (n_train + n_test) * 5 // 4  # the UCI sets hold out 20 % as their test split
    concrete = regression_table(n_rows, 8, 1, seed + 3)
    write_xls(root / "Concrete_Data.xls", [CONCRETE_HEADER, *concrete.tolist()])
    energy = regression_table(n_rows, 8, 2, seed + 4)
    write_xlsx(root / "ENB2012_data.xlsx", [ENERGY_HEADER, *energy.tolist()])
    pima = regression_table(n_rows, 8, 1, seed + 5)
    pima[:, 8] = pima[:, 8] > np.median(pima[:, 8])
    write_pima(root / "pima-indians-diabetes.data.csv", pima)
    window = 9  # the smoke scale's seq_len + 1
    write_ptb_set(root, (n_train * window, n_test * window, n_test * window), 50, seed + 6)
    return root
