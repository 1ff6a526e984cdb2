"""Loaders on small files written in the published on-disk formats (``tests/data_writers.py``).

Each writer reproduces the real format byte for byte in structure (IDX headers and magic numbers,
Python-2 pickled CIFAR batches, .xls/.xlsx with the published headers, the UCI text files,
Mikolov's PTB lines); expected tensors are computed here from the written values.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import torch
from data_writers import (
    CIFAR_CLASSES,
    CONCRETE_HEADER,
    ENERGY_HEADER,
    py2_pickle,
    write_cifar,
    write_mnist,
    write_pima,
    write_ptb,
    write_wdbc,
    write_xls,
    write_xlsx,
)
from data_writers import uci_table as _table

from pbrf.data import (
    SPECS,
    DataConfig,
    DataFilesMissingError,
    MalformedDataError,
    get_spec,
    load_dataset,
    signature,
    split_sizes,
)
from pbrf.data.sizes import train_counts

# --------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def load_failing(cfg: DataConfig, exc: type[Exception]) -> Exception:
    """Load ``cfg``, expect ``exc``, and check nothing under the root was written."""
    before = snapshot(Path(cfg.root))
    with pytest.raises(exc) as info:
        load_dataset(cfg)
    assert snapshot(Path(cfg.root)) == before
    return info.value


def row_index(table: np.ndarray, x: torch.Tensor) -> np.ndarray:
    """Index of each loaded row in the written table (first column is unique)."""
    key = {float(np.float32(v)): i for i, v in enumerate(table[:, 0])}
    return np.array([key[float(v)] for v in x[:, 0]])


# --------------------------------------------------------------------------- registry / config


def test_registry_names_files_and_checksums_agree_with_config_and_torchvision() -> None:
    from torchvision import datasets as tvd

    assert get_args(DataConfig.model_fields["name"].annotation) == tuple(SPECS)
    assert all(f.description for f in DataConfig.model_fields.values())
    for spec in SPECS.values():
        assert spec.bundled == (not spec.files) == (not spec.sources and spec.package is None)
        assert all(not Path(f).is_absolute() for f in spec.files)
    for name, cls in (("mnist", tvd.MNIST), ("fashion_mnist", tvd.FashionMNIST)):
        srcs = get_spec(name).sources
        assert [s.md5 for s in srcs] == [md5 for _, md5 in cls.resources]
        assert [s.urls for s in srcs] == [
            tuple(m + f for m in cls.mirrors) for f, _ in cls.resources
        ]
        assert get_spec(name).files == tuple(
            f"{cls.__name__}/raw/{f.removesuffix('.gz')}" for f, _ in cls.resources
        )
    (cifar,) = get_spec("cifar10").sources
    assert (cifar.urls[0], cifar.md5) == (tvd.CIFAR10.url, tvd.CIFAR10.tgz_md5)
    published = [*tvd.CIFAR10.train_list, *tvd.CIFAR10.test_list]
    published.append([tvd.CIFAR10.meta["filename"], tvd.CIFAR10.meta["md5"]])
    assert [(m.path, m.md5) for m in cifar.members] == [
        (f"{tvd.CIFAR10.base_folder}/{f}", md5) for f, md5 in published
    ]


def test_signature_and_sizes_from_config_alone() -> None:
    ae = DataConfig(name="mnist", target="input", standardize=False)
    assert signature(ae) == ("reconstruction", "image", (1, 28, 28), 784, "binary_cross_entropy")
    assert signature(DataConfig(name="cifar10")).input_shape == (3, 32, 32)
    lm = DataConfig(name="ptb", seq_len=20)
    assert signature(lm) == ("language_model", "text", (20,), 10000, "cross_entropy")
    # PTB: 929,589 / 73,760 / 82,430 tokens in windows of seq_len + 1
    assert split_sizes(lm) == (929589 // 21, 73760 // 21, 82430 // 21)
    assert split_sizes(DataConfig(name="mnist", fraction=0.1)) == (6000, 0, 10000)
    tenth = DataConfig(name="mnist", fraction=0.1, validation_fraction=0.1, test_size=500)
    assert split_sizes(tenth) == (5400, 600, 500)
    assert DataConfig(name="mnist", fraction=0.1, train_size=100).n_train() == 100
    # no official test split: scikit-learn's train_test_split rounds the test count up
    assert split_sizes(DataConfig(name="concrete")) == (1030 - 206, 0, 206)
    assert split_sizes(DataConfig(name="energy", validation_fraction=0.25)) == (460, 154, 154)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "digits", "target": "input", "standardize": False}, "target"),
        ({"name": "mnist", "target": "input"}, "standardize"),
        ({"name": "mnist", "seq_len": 20}, "seq_len"),
        ({"name": "cifar10", "test_fraction": 0.3}, "test_fraction"),
        ({"name": "ptb", "validation_fraction": 0.1}, "validation_fraction"),
        ({"name": "ptb", "standardize": False}, "standardize"),
        ({"name": "ptb", "seq_len": 10**6}, "seq_len"),
        ({"name": "mnist", "fraction": 0.0}, "fraction"),
        ({"name": "mnist", "fraction": 1.5}, "fraction"),
        ({"name": "digits", "fraction": 1e-5}, "fraction"),
        ({"name": "digits", "validation_fraction": 1e-5}, "validation_fraction"),
        ({"name": "digits", "validation_fraction": 1.0}, "validation_fraction"),
        ({"name": "digits", "test_size": 0}, "test_size"),
        ({"name": "digits", "train_size": 1}, "train_size"),
        ({"name": "digits", "seed": -1}, "seed"),
        ({"name": "imagenet"}, "name"),
        ({"name": "digits", "shuffle": True}, "shuffle"),
    ],
)
def test_config_rejects_ignored_or_impossible_settings(kwargs: dict, field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        DataConfig(**kwargs)


def test_config_accepts_root_for_bundled_sets_and_is_frozen() -> None:
    cfg = DataConfig(name="digits", root="elsewhere")
    assert cfg.root == "elsewhere"
    with pytest.raises(ValueError, match="frozen"):
        cfg.seed = 1  # type: ignore[misc]
    assert DataConfig.model_validate(cfg.model_dump()) == cfg  # a dump round-trips


# --------------------------------------------------------------------------- MNIST / FashionMNIST


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_idx_images_load_as_unit_interval_pixels(tmp_path: Path, name: str, folder: str) -> None:
    files = write_mnist(tmp_path, folder)
    cfg = DataConfig(name=name, root=str(tmp_path), standardize=False)
    before = snapshot(tmp_path)
    ds = load_dataset(cfg)
    assert snapshot(tmp_path) == before  # loading writes nothing
    (x_tr, y_tr), (x_te, y_te) = files["train"], files["t10k"]
    assert ds.x_train.dtype == torch.float32 and ds.x_train.shape == (24, 1, 28, 28)
    assert torch.equal(ds.x_train, torch.from_numpy(x_tr[:, None].astype(np.float32) / 255))
    assert torch.equal(ds.x_test, torch.from_numpy(x_te[:, None].astype(np.float32) / 255))
    assert ds.t_train.dtype == torch.int64 and ds.t_train.tolist() == y_tr.tolist()
    assert ds.t_test.tolist() == y_te.tolist()
    assert ds.x_val.shape == (0, 1, 28, 28) and ds.t_val.shape == (0,)
    assert (ds.task, ds.output_dim, ds.default_loss) == ("multiclass", 10, "cross_entropy")
    assert ds.input_shape == signature(cfg).input_shape


def test_idx_standardization_uses_training_channel_statistics(tmp_path: Path) -> None:
    files = write_mnist(tmp_path, "MNIST")
    ds = load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    x_tr, x_te = (files[s][0].astype(np.float64) / 255 for s in ("train", "t10k"))
    mean, std = x_tr.mean(), x_tr.std()
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), (x_tr - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_test[:, 0].numpy(), (x_te - mean) / std, atol=1e-5)
    assert abs(float(ds.x_train.double().mean())) < 1e-6
    assert abs(float(ds.x_train.double().std(unbiased=False)) - 1) < 1e-5


def test_fraction_validation_and_caps_are_seeded_disjoint_subsets(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", n_train=40, n_test=20)
    kw = dict(name="mnist", root=str(tmp_path), standardize=False, fraction=0.5)
    cfg = DataConfig(**kw, validation_fraction=0.25, train_size=12, test_size=7)
    ds = load_dataset(cfg)
    counts = train_counts(40, cfg)
    assert counts == (20, 5, 12)
    assert (ds.n_train, ds.n_val, ds.n_test) == (12, 5, 7)

    def ids(x: torch.Tensor) -> list[int]:
        return [round(v * 255) for v in x[:, 0, 0, 0].tolist()]

    train, val, test = ids(ds.x_train), ids(ds.x_val), ids(ds.x_test)
    assert len(set(train + val)) == 17 and set(train + val) <= set(range(40))
    assert len(set(test)) == 7 and set(test) <= set(range(100, 120))
    again = load_dataset(cfg)
    assert ids(again.x_train) == train and ids(again.x_val) == val and ids(again.x_test) == test
    other = load_dataset(DataConfig(**{**kw, "seed": 1}, validation_fraction=0.25))
    assert sorted(ids(other.x_train) + ids(other.x_val)) != sorted(train + val)
    plain = load_dataset(DataConfig(**kw))  # fraction only: 20 of the 40, no validation
    assert plain.n_train == 20 and plain.n_val == 0 and plain.n_test == 20


def test_input_target_makes_reconstruction_in_unit_interval(tmp_path: Path) -> None:
    files = write_mnist(tmp_path, "MNIST")
    cfg = DataConfig(name="mnist", root=str(tmp_path), target="input", standardize=False)
    ds = load_dataset(cfg)
    expected = torch.from_numpy(files["train"][0].reshape(24, 784).astype(np.float32) / 255)
    assert torch.equal(ds.t_train, expected) and torch.equal(ds.x_train.flatten(1), expected)
    assert (ds.task, ds.output_dim, ds.default_loss) == (
        "reconstruction",
        784,
        "binary_cross_entropy",
    )
    half = ds.to("cpu", torch.float64)
    assert half.x_train.dtype == half.t_train.dtype == torch.float64


@pytest.mark.parametrize(
    ("file", "corrupt", "problem"),
    [
        ("train-images-idx3-ubyte", lambda b: b"", "is empty"),
        ("train-images-idx3-ubyte", lambda b: b[:10], "truncated"),
        ("train-images-idx3-ubyte", lambda b: b[:-1], "truncated"),
        ("train-images-idx3-ubyte", lambda b: b + b"\0", "longer than its header"),
        ("train-images-idx3-ubyte", lambda b: b"\0\0\x08\x01" + b[4:], "magic number"),
        ("t10k-labels-idx1-ubyte", lambda b: b"\0\0\x08\x03" + b[4:], "magic number"),
        ("train-images-idx3-ubyte", lambda b: b[:8] + struct.pack(">II", 14, 56) + b[16:], "14×56"),
        (
            "t10k-labels-idx1-ubyte",
            lambda b: b[:4] + struct.pack(">I", 7) + b[8:15],
            "holds 7 labels",
        ),
        ("train-labels-idx1-ubyte", lambda b: b[:-1] + b"\x0c", "label 12"),
    ],
)
def test_malformed_idx_names_the_file(tmp_path: Path, file: str, corrupt, problem: str) -> None:
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / file
    path.write_bytes(corrupt(path.read_bytes()))
    err = load_failing(DataConfig(name="mnist", root=str(tmp_path)), MalformedDataError)
    assert str(path) in str(err) and problem in str(err)


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_batches_load_through_torchvision_in_batch_order(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path)
    raw = pickle.loads(
        (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes"
    )
    assert {b"data", b"labels"} <= raw.keys()  # the published key layout
    ds = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), standardize=False))
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    expected = torch.from_numpy(train.reshape(20, 3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(ds.x_train, expected)
    assert ds.t_train.tolist() == labels.tolist()
    assert ds.t_test.tolist() == batches["test_batch"][1].tolist()
    std = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    px = train.reshape(20, 3, 32 * 32).astype(np.float64) / 255
    mean, sd = px.mean(axis=(0, 2)), px.std(axis=(0, 2))
    np.testing.assert_allclose(
        std.x_train.numpy().reshape(20, 3, -1), (px - mean[:, None]) / sd[:, None], atol=1e-5
    )
    test_px = batches["test_batch"][0].reshape(6, 3, -1).astype(np.float64) / 255
    np.testing.assert_allclose(
        std.x_test.numpy().reshape(6, 3, -1), (test_px - mean[:, None]) / sd[:, None], atol=1e-5
    )


@pytest.mark.parametrize(
    ("file", "content", "problem"),
    [
        ("data_batch_3", lambda: b"", "is empty"),
        ("data_batch_2", lambda: py2_pickle({b"data": np.zeros((2, 3072), np.uint8)})[:-30], "not a CIFAR-10"),
        ("test_batch", lambda: py2_pickle({b"labels": [1]}), "not a CIFAR-10"),
        ("data_batch_1", lambda: py2_pickle({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}), "not a CIFAR-10"),
        ("data_batch_4", lambda: py2_pickle({b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}), "uint8"),
        ("data_batch_5", lambda: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "1 labels for 2"),
        ("data_batch_5", lambda: py2_pickle({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "label 10"),
        ("batches.meta", lambda: py2_pickle({b"label_names": CIFAR_CLASSES[:9]}), "9 classes"),
        ("batches.meta", lambda: b"\x80\x02}q", "metadata"),
    ],
)  # fmt: skip
def test_malformed_cifar_names_the_file(tmp_path: Path, file: str, content, problem: str) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / file
    path.write_bytes(content())
    err = load_failing(DataConfig(name="cifar10", root=str(tmp_path)), MalformedDataError)
    assert str(path) in str(err) and problem in str(err)


# --------------------------------------------------------------------------- UCI tables


def test_concrete_xls_regression_standardized_with_training_statistics(tmp_path: Path) -> None:
    table = _table(40, 9, seed=1)
    write_xls(tmp_path / "Concrete_Data.xls", [CONCRETE_HEADER, *table.tolist()])
    base = dict(name="concrete", root=str(tmp_path))
    raw = load_dataset(DataConfig(**base, standardize=False))
    assert (raw.n_train, raw.n_test) == (32, 8) and raw.task == "regression"
    rows = row_index(table, raw.x_train)
    test_rows = row_index(table, raw.x_test)
    assert sorted([*rows, *test_rows]) == list(range(40))
    assert torch.equal(raw.x_train, torch.tensor(table[rows, :8], dtype=torch.float32))
    assert torch.equal(raw.t_train, torch.tensor(table[rows, 8:], dtype=torch.float32))
    ds = load_dataset(DataConfig(**base))
    tr = table[rows]
    mean, std = tr.mean(0), tr.std(0)
    expect = (table[test_rows] - mean) / std
    np.testing.assert_allclose(ds.x_test.numpy(), expect[:, :8], atol=1e-5)
    np.testing.assert_allclose(ds.t_test.numpy(), expect[:, 8:], atol=1e-5)
    np.testing.assert_allclose(ds.x_train.numpy(), ((tr - mean) / std)[:, :8], atol=1e-5)


def test_energy_xlsx_targets_heating_load_and_skips_blank_margin(tmp_path: Path) -> None:
    table = _table(30, 10, seed=2)
    write_xlsx(tmp_path / "ENB2012_data.xlsx", [ENERGY_HEADER, *table.tolist()])
    ds = load_dataset(
        DataConfig(name="energy", root=str(tmp_path), standardize=False, validation_fraction=0.2)
    )
    assert (ds.n_train, ds.n_val, ds.n_test) == (19, 5, 6)
    for x, t in ((ds.x_train, ds.t_train), (ds.x_val, ds.t_val), (ds.x_test, ds.t_test)):
        rows = row_index(table, x)
        assert torch.equal(t[:, 0], torch.tensor(table[rows, 8], dtype=torch.float32))  # Y1


def test_pima_csv_binary_stratified(tmp_path: Path) -> None:
    table = _table(50, 9, seed=3, decimals=3)
    table[:, 8] = np.arange(50) % 5 == 0  # 10 positives
    write_pima(tmp_path / "pima-indians-diabetes.data.csv", table)
    ds = load_dataset(DataConfig(name="pima_diabetes", root=str(tmp_path), standardize=False))
    assert ds.t_train.shape == (40, 1) and ds.t_train.dtype == torch.float32
    assert float(ds.t_test.sum()) == 2  # stratified: 1 in 5 of the 10 test examples
    rows = row_index(table, ds.x_train)
    assert torch.equal(ds.t_train[:, 0], torch.tensor(table[rows, 8], dtype=torch.float32))
    assert ds.default_loss == "binary_cross_entropy" and ds.output_dim == 1


def test_wdbc_file_gives_the_tensors_of_bundled_breast_cancer(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    ids = np.arange(842302, 842302 + 569)
    write_wdbc(tmp_path / "wdbc.data", ids, bunch.target == 1, bunch.data)
    for extra in ({}, {"validation_fraction": 0.1, "train_size": 100, "seed": 4}):
        a = load_dataset(DataConfig(name="wdbc", root=str(tmp_path), **extra))
        b = load_dataset(DataConfig(name="breast_cancer", **extra))
        for f in ("x_train", "t_train", "x_val", "t_val", "x_test", "t_test"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f


def _concrete_rows() -> list[list[Any]]:
    return [list(CONCRETE_HEADER), *_table(12, 9, seed=5).tolist()]


def _energy_rows() -> list[list[Any]]:
    return [list(ENERGY_HEADER), *_table(12, 10, seed=6).tolist()]


def _set(rows: list[list[Any]], r: int, c: int, v: Any) -> list[list[Any]]:
    rows[r][c] = v
    return rows


@pytest.mark.parametrize(
    ("name", "file", "write", "problem", "row", "col"),
    [
        ("concrete", "Concrete_Data.xls", lambda p: write_xls(p, _set(_concrete_rows(), 3, 2, "n/a")), "bad value 'n/a'", 4, 3),
        ("concrete", "Concrete_Data.xls", lambda p: write_xls(p, _set(_concrete_rows(), 5, 0, None)), "empty cell", 6, 1),
        ("concrete", "Concrete_Data.xls", lambda p: write_xls(p, _concrete_rows()[:1]), "no data rows", None, None),
        ("concrete", "Concrete_Data.xls", lambda p: write_xls(p, [[CONCRETE_HEADER[0]]]), "1 columns", 1, None),
        ("concrete", "Concrete_Data.xls", lambda p: p.write_bytes(b"Cement,Slag\n1,2\n"), "cannot be read", None, None),
        ("concrete", "Concrete_Data.xls", lambda p: p.write_bytes(b""), "cannot be read", None, None),
        ("energy", "ENB2012_data.xlsx", lambda p: write_xlsx(p, _set(_energy_rows(), 2, 9, "x")), "bad value 'x'", 3, 10),
        ("energy", "ENB2012_data.xlsx", lambda p: write_xlsx(p, _set(_energy_rows(), 2, 4, "#DIV/0!")), "bad value '#DIV/0!'", 3, 5),
        ("energy", "ENB2012_data.xlsx", lambda p: write_xlsx(p, _set(_energy_rows(), 0, 8, "Heating")), "expected 'Y1'", 1, 9),
        ("energy", "ENB2012_data.xlsx", lambda p: write_xlsx(p, _energy_rows()[:1]), "no data rows", None, None),
        ("energy", "ENB2012_data.xlsx", lambda p: write_xlsx(p, [[None]], blank_margin=False), "is empty", None, None),
        ("energy", "ENB2012_data.xlsx", lambda p: p.write_bytes(b"PK\x03\x04broken"), "cannot be read", None, None),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("1,2,3,4,5,6,7,8,1\n1,2,3\n"), "has 3 fields, expected 9", 2, 4),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("1,2,3,4,5,6,7,8,1,0\n"), "has 10 fields", 1, 10),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("1,2,3,4,5,6,7,8,1\n1,2,x,4,5,6,7,8,0\n"), "bad value 'x'", 2, 3),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("1,2,3,4,5,6,7,nan,1\n"), "non-finite", 1, 8),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("1,2,3,4,5,6,7,8,2\n"), "not 0 or 1", 1, 9),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text(""), "is empty", None, None),
        ("pima_diabetes", "pima-indians-diabetes.data.csv", lambda p: p.write_text("Pregnancies,Glucose,BloodPressure,SkinThickness,Insulin,BMI,DiabetesPedigreeFunction,Age,Outcome\n"), "bad value 'Pregnancies'", 1, 1),
        ("wdbc", "wdbc.data", lambda p: p.write_text("842302,X," + ",".join(["1.5"] * 30) + "\n"), "M or B", 1, 2),
        ("wdbc", "wdbc.data", lambda p: p.write_text("842302,M," + ",".join(["1.5"] * 29) + "\n"), "has 31 fields", 1, 32),
        ("wdbc", "wdbc.data", lambda p: p.write_bytes(b"842302,M,\xff\n"), "not UTF-8", 1, None),
    ],
)  # fmt: skip
def test_malformed_tables_name_file_row_and_column(
    tmp_path: Path, name: str, file: str, write, problem: str, row: int | None, col: int | None
) -> None:
    path = tmp_path / file
    write(path)
    err = load_failing(DataConfig(name=name, root=str(tmp_path)), MalformedDataError)
    assert isinstance(err, MalformedDataError) and isinstance(err, ValueError)
    assert str(err).startswith(str(path)) and problem in str(err)
    assert (err.row, err.column) == (row, col)
    if row is not None:
        assert f"row {row}" in str(err)


# --------------------------------------------------------------------------- Penn Treebank

PTB_TRAIN = """the cat sat on the mat
a dog <unk> N times
the end"""


def test_ptb_vocabulary_windows_and_splits(tmp_path: Path) -> None:
    write_ptb(tmp_path, PTB_TRAIN, "the cat\na dog sat", "the mat <unk>\nthe end\ncat")
    ds = load_dataset(DataConfig(name="ptb", root=str(tmp_path), seq_len=3))
    vocab = ["the", "cat", "sat", "on", "mat", "<eos>", "a", "dog", "<unk>", "N", "times", "end"]
    assert ds.vocabulary == tuple(vocab) and ds.output_dim == 12
    ids = {w: i for i, w in enumerate(vocab)}
    stream = [ids[w] for line in PTB_TRAIN.split("\n") for w in [*line.split(), "<eos>"]]
    assert len(stream) == 16  # 4 windows of 4 tokens
    windows = torch.tensor(stream).view(4, 4)
    assert ds.x_train.dtype == ds.t_train.dtype == torch.int64
    assert torch.equal(ds.x_train, windows[:, :3]) and torch.equal(ds.t_train, windows[:, 1:])
    valid = [
        ids[w] for w in ["the", "cat", "<eos>", "a", "dog", "sat", "<eos>"]
    ]  # 7 tokens: 1 window
    assert ds.x_val.tolist() == [valid[:3]] and ds.t_val.tolist() == [valid[1:4]]
    test = [ids[w] for w in ["the", "mat", "<unk>", "<eos>", "the", "end", "<eos>", "cat", "<eos>"]]
    assert ds.x_test.tolist() == [test[:3], test[4:7]] and ds.t_test.tolist() == [
        test[1:4],
        test[5:8],
    ]
    assert (ds.task, ds.default_loss, ds.input_shape) == ("language_model", "cross_entropy", (3,))
    cast = ds.to("cpu", torch.float64)
    assert cast.x_train.dtype == cast.t_train.dtype == torch.int64  # ids stay integers
    capped = load_dataset(
        DataConfig(name="ptb", root=str(tmp_path), seq_len=3, train_size=2, test_size=1)
    )
    assert capped.n_train == 2 and capped.n_test == 1
    assert {tuple(r) for r in capped.x_train.tolist()} <= {
        tuple(r) for r in windows[:, :3].tolist()
    }


@pytest.mark.parametrize(
    ("files", "bad", "problem", "row", "col"),
    [
        ((PTB_TRAIN, "the cat\nthe zebra sat", "the end"), "ptb.valid.txt", "'zebra' is not in the training vocabulary", 2, 2),
        ((PTB_TRAIN, "the cat sat", "\n"), "ptb.test.txt", "is empty", None, None),
        (("the", "the", "the"), "ptb.train.txt", "fewer than one window", None, None),
    ],
)  # fmt: skip
def test_malformed_ptb_names_file_row_and_column(
    tmp_path: Path, files: tuple[str, str, str], bad: str, problem: str, row, col
) -> None:
    write_ptb(tmp_path, *files)
    err = load_failing(DataConfig(name="ptb", root=str(tmp_path), seq_len=3), MalformedDataError)
    assert str(err).startswith(str(tmp_path / bad)) and problem in str(err)
    assert (err.row, err.column) == (row, col)


# --------------------------------------------------------------------------- missing files


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if not s.bundled])
def test_missing_files_are_all_named_with_the_fetch_command(tmp_path: Path, name: str) -> None:
    root = tmp_path / "my data"
    spec = get_spec(name)
    root.mkdir()
    if len(spec.files) > 1:  # one file present: only the others are reported
        (root / spec.files[0]).parent.mkdir(parents=True, exist_ok=True)
        (root / spec.files[0]).write_bytes(b"x")
    err = load_failing(DataConfig(name=name, root=str(root)), DataFilesMissingError)
    assert isinstance(err, FileNotFoundError)
    missing = spec.files[1:] if len(spec.files) > 1 else spec.files
    assert [str(p) for p in err.missing] == [str(root / f) for f in missing]
    for f in missing:
        assert str(root / f) in str(err)
    assert f"pbrf data fetch {name} --root '{root}'" in str(err)


def test_gzip_is_not_a_loadable_idx(tmp_path: Path) -> None:
    """The loader reads decompressed IDX files; a still-gzipped file is reported, not guessed."""
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    err = load_failing(DataConfig(name="mnist", root=str(tmp_path)), MalformedDataError)
    assert str(path) in str(err) and "magic number 0x1f8b" in str(err)
