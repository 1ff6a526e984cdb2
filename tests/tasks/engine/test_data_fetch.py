"""``tasks.engine.datafetch`` without network: unreachable local ports and ``file://`` mirrors."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import re
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbrf.data import SPECS, DataConfig, get_spec, load_dataset
from pbrf.data.registry import Member, Source
from tasks.engine.datafetch import FetchError, OfflineError, expected_files, fetch

FILE_BACKED = [n for n, s in SPECS.items() if s.sources]  # mnist_5k: package copy only


@pytest.fixture
def dead_url() -> Iterator[str]:
    """Base URL of a local port that refuses connections (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _serve(directory: Path, name: str, data: bytes) -> str:
    """A ``file://`` URL serving ``data``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return (directory / name).as_uri()


@pytest.mark.parametrize("name", FILE_BACKED)
def test_expected_files_match_the_loaders_paths(tmp_path: Path, name: str) -> None:
    spec = get_spec(name)
    files = expected_files(name, tmp_path)
    assert [f.path for f in files] == [tmp_path / p for p in spec.files]
    assert all(f.url.startswith(("https://", "http://")) for f in files)
    assert all(f.md5 is None or re.fullmatch(r"[0-9a-f]{32}", f.md5) for f in files)
    if name in ("mnist", "fashion_mnist", "cifar10"):
        assert all(f.md5 for f in files)  # published checksums are verified at fetch time


def test_bundled_sets_need_no_fetch(tmp_path: Path) -> None:
    for name in ("breast_cancer", "digits", "diabetes"):
        assert expected_files(name, tmp_path / "d") == []
        result = fetch(name, tmp_path / "d")
        assert result.bundled and "nothing to fetch" in result.summary()
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "ptb"])
def test_offline_fetch_says_which_files_to_place_where(
    tmp_path: Path, dead_url: str, name: str
) -> None:
    spec = get_spec(name)
    sources = [
        dataclasses.replace(s, urls=tuple(dead_url + u.rsplit("/", 1)[1] for u in s.urls))
        for s in spec.sources
    ]
    root = tmp_path / "data"
    with pytest.raises(OfflineError) as info:
        fetch(name, root, sources=sources, timeout=5)
    msg = str(info.value)
    assert not root.exists()  # nothing written, not even the directory
    for src in sources:
        for url in src.urls:
            assert url in msg
        if src.md5:
            assert src.md5 in msg
    for f in spec.files:
        assert str(root / f) in msg
    assert f"pbrf data fetch {name} --root {root}" in msg
    if name == "cifar10":
        assert "extract:" in msg and "cifar-10-batches-py/test_batch ->" in msg
    if name == "mnist":
        assert "decompress (gunzip) to:" in msg and "mirrors:" in msg


def test_gzip_download_is_verified_decompressed_and_kept(tmp_path: Path, dead_url: str) -> None:
    payload = b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"  # a 3-label IDX file
    packed = gzip.compress(payload)
    url = _serve(tmp_path / "mirror", "labels.gz", packed)
    member = Member("", "MNIST/raw/t10k-labels-idx1-ubyte")
    src = Source(
        urls=(dead_url + "labels.gz", url), md5=_md5(packed), unpack="gzip", members=(member,)
    )
    root = tmp_path / "data"
    result = fetch("mnist", root, sources=[src])
    assert result.downloaded == (root / member.path,) and result.present == ()
    assert _files(root) == [root / member.path]  # no temporary file left behind
    assert (root / member.path).read_bytes() == payload
    offline = dataclasses.replace(src, urls=(dead_url + "labels.gz",))
    again = fetch("mnist", root, sources=[offline])  # present: no download attempted
    assert again.downloaded == () and again.present == (root / member.path,)


def test_checksum_mismatch_discards_the_download(tmp_path: Path) -> None:
    url = _serve(tmp_path / "mirror", "wdbc.data", b"842302,M,1.0\n")
    src = Source(urls=(url,), md5="0" * 32, unpack="none", members=(Member("", "wdbc.data"),))
    with pytest.raises(FetchError, match="md5") as info:
        fetch("wdbc", tmp_path / "data", sources=[src])
    assert not isinstance(info.value, OfflineError)
    assert _files(tmp_path / "data") == []


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_members_are_all_or_nothing(tmp_path: Path) -> None:
    content = {"cifar-10-batches-py/a": b"first", "cifar-10-batches-py/b": b"second"}
    archive = _tar_gz(content)
    url = _serve(tmp_path / "mirror", "c.tar.gz", archive)
    good = tuple(Member(n, n, _md5(d)) for n, d in content.items())
    bad = (good[0], Member(good[1].archive_path, good[1].path, "f" * 32))
    src = Source(urls=(url,), md5=_md5(archive), unpack="tar.gz", members=bad)
    root = tmp_path / "data"
    with pytest.raises(FetchError, match="cifar-10-batches-py/b has md5"):
        fetch("cifar10", root, sources=[src])
    assert _files(root) == []  # the first member, though correct, was not put in place
    fetch("cifar10", root, sources=[dataclasses.replace(src, members=good)])
    assert {p.relative_to(root).as_posix(): p.read_bytes() for p in _files(root)} == content
    (root / "cifar-10-batches-py/b").write_bytes(b"tampered")
    with pytest.raises(FetchError, match="present but its md5"):
        fetch("cifar10", root, sources=[dataclasses.replace(src, members=good)])


def test_broken_archive_is_a_fetch_error(tmp_path: Path) -> None:
    url = _serve(tmp_path / "mirror", "x.gz", b"not gzip at all")
    src = Source(urls=(url,), md5=None, unpack="gzip", members=(Member("", "MNIST/raw/x"),))
    with pytest.raises(FetchError, match="cannot unpack"):
        fetch("mnist", tmp_path / "data", sources=[src])
    assert _files(tmp_path / "data") == []


def test_fetched_file_loads(tmp_path: Path) -> None:
    rows = [
        f"{i},{100 + i},{60 + i % 7},20,0,{30 + i / 10},0.5,{20 + i},{i % 2}" for i in range(20)
    ]
    url = _serve(tmp_path / "mirror", "pima.csv", ("\n".join(rows) + "\n").encode())
    (spec_src,) = get_spec("pima_diabetes").sources
    root = tmp_path / "data"
    fetch("pima_diabetes", root, sources=[dataclasses.replace(spec_src, urls=(url,))])
    ds = load_dataset(DataConfig(name="pima_diabetes", root=str(root), standardize=False))
    assert ds.n_train + ds.n_test == 20 and ds.x_train.shape[1] == 8
