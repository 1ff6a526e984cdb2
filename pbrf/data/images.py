"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's dataset classes (``download=False``).

Files: ``root/MNIST/raw/*-ubyte``, ``root/FashionMNIST/raw/*-ubyte`` and the real-MNIST subset's
``root/mnist_5k/raw/*-ubyte`` (IDX, written by ``pbrf data fetch mnist_5k``), and
``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (pickled batches).

Checksums: ``pbrf data fetch`` verifies the md5 of every download (and of each CIFAR-10
batch). Loading checks structure instead — IDX magic numbers, image size and file length;
a CIFAR batch's array shape, dtype and labels — so a truncated or foreign file fails with its
name. torchvision's CIFAR10 would otherwise insist on the published md5s at every load; here
each batch is opened by a subclass whose file list carries no md5 (torchvision then checks
existence only). Pickled batches execute code when loaded: load only files ``fetch`` verified.

Images become float32 in [0, 1], shape ``(N, C, H, W)``. With ``standardize`` each channel is
shifted and scaled by the training split's mean and standard deviation (computed exactly from
the integer pixels). With ``target="input"`` inputs and targets are the [0, 1] pixels, targets
flattened to ``(N, C·H·W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets as tvd

from pbrf.data.config import DataConfig
from pbrf.data.dataset import Dataset
from pbrf.data.errors import MalformedDataError
from pbrf.data.registry import get_spec, signature
from pbrf.data.splits import test_indices, train_val_indices

N_CLASSES = 10


class MNIST5k(tvd.MNIST):
    """torchvision's MNIST reader pointed at ``root/mnist_5k/raw`` (the same IDX file names)."""

    @property
    def raw_folder(self) -> str:
        return str(Path(self.root) / "mnist_5k" / "raw")


_IDX_CLASSES = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "mnist_5k": MNIST5k}
_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes; 3 or 1 dimensions


# --------------------------------------------------------------------------- IDX (MNIST)


def check_idx(path: Path, what: str, shape: tuple[int, int] = (28, 28)) -> int:
    """Validate an IDX ``images`` or ``labels`` file's header and length; return its count."""
    head_len = 16 if what == "images" else 8
    size = path.stat().st_size
    if size == 0:
        raise MalformedDataError(path, "is empty")
    with open(path, "rb") as fh:
        head = fh.read(head_len)
    if len(head) < head_len:
        raise MalformedDataError(
            path, f"is truncated: {size} bytes, an IDX {what} header needs {head_len}"
        )
    magic = int.from_bytes(head[:4], "big")
    if magic != _IDX_MAGIC[what]:
        raise MalformedDataError(
            path,
            f"IDX magic number {magic:#010x}, expected {_IDX_MAGIC[what]:#010x} ({what} of unsigned bytes)",
        )
    n = int.from_bytes(head[4:8], "big")
    per = 1
    if what == "images":
        dims = (int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big"))
        if dims != shape:
            raise MalformedDataError(
                path, f"images are {dims[0]}×{dims[1]}, expected {shape[0]}×{shape[1]}"
            )
        per = shape[0] * shape[1]
    need = head_len + n * per
    if size != need:
        state = "truncated" if size < need else "longer than its header says"
        raise MalformedDataError(path, f"is {state}: {size} bytes, {n} {what} need {need}")
    return n


def _idx_split(cfg: DataConfig, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    cls = _IDX_CLASSES[cfg.name]
    raw = root / ("mnist_5k" if cls is MNIST5k else cls.__name__) / "raw"
    stem = "train" if train else "t10k"
    images, labels = raw / f"{stem}-images-idx3-ubyte", raw / f"{stem}-labels-idx1-ubyte"
    n_img, n_lab = check_idx(images, "images"), check_idx(labels, "labels")
    if n_img != n_lab:
        raise MalformedDataError(
            labels, f"holds {n_lab} labels but {images.name} holds {n_img} images"
        )
    try:
        ds = cls(str(root), train=train, download=False)
    except Exception as e:  # checked above; anything left is torchvision's own complaint
        raise MalformedDataError(raw, f"torchvision cannot read the {stem} files ({e})") from e
    _check_labels(labels, ds.targets)
    return ds.data.unsqueeze(1), ds.targets.long()


def _check_labels(path: Path, labels: Tensor) -> None:
    bad = torch.nonzero((labels < 0) | (labels >= N_CLASSES)).flatten()
    if bad.numel():
        i = int(bad[0])
        raise MalformedDataError(
            path, f"label {int(labels[i])} of example {i} is outside 0..{N_CLASSES - 1}"
        )


# --------------------------------------------------------------------------- CIFAR-10


class _CIFAR10Batch(tvd.CIFAR10):
    """torchvision's CIFAR10 reading exactly one batch file, checking existence but no md5."""

    meta: ClassVar[dict[str, str | None]] = {**tvd.CIFAR10.meta, "md5": None}

    def __init__(self, root: str, batch: str) -> None:
        self.train_list, self.test_list = [[batch, None]], []
        super().__init__(root, train=True, download=False)

    def _load_meta(self) -> None:  # read once, by `read_classes`, so errors name batches.meta
        pass

    @classmethod
    def read_classes(cls, root: str) -> list[str]:
        """Class names from ``batches.meta``, read by torchvision's own method."""
        probe = cls.__new__(cls)
        tvd.VisionDataset.__init__(probe, root)
        tvd.CIFAR10._load_meta(probe)
        return list(probe.classes)


def _cifar_batch(root: Path, batch: str) -> tuple[Tensor, Tensor]:
    path = root / tvd.CIFAR10.base_folder / batch
    if path.stat().st_size == 0:
        raise MalformedDataError(path, "is empty")
    try:
        ds = _CIFAR10Batch(str(root), batch)
    except Exception as e:  # a broken pickle raises many exception types
        raise MalformedDataError(
            path, f"is not a CIFAR-10 python batch ({type(e).__name__}: {e})"
        ) from e
    data = np.asarray(ds.data)
    if data.dtype != np.uint8 or data.shape[1:] != (32, 32, 3):
        raise MalformedDataError(
            path, f"data must be uint8 rows of 3072 pixels, got {data.dtype} {data.shape}"
        )
    labels = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
    if labels.shape != (len(data),):
        raise MalformedDataError(path, f"holds {labels.numel()} labels for {len(data)} images")
    _check_labels(path, labels)
    return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2))), labels


def _cifar_meta(root: Path) -> None:
    path = root / tvd.CIFAR10.base_folder / tvd.CIFAR10.meta["filename"]
    try:
        classes = _CIFAR10Batch.read_classes(str(root))
    except Exception as e:  # a broken pickle raises many exception types
        raise MalformedDataError(path, f"is not CIFAR-10 metadata ({type(e).__name__}: {e})") from e
    if len(classes) != N_CLASSES:
        raise MalformedDataError(path, f"names {len(classes)} classes, expected {N_CLASSES}")


def _cifar_split(root: Path, train: bool) -> tuple[Tensor, Tensor]:
    names = (
        [f for f, _ in tvd.CIFAR10.train_list] if train else [f for f, _ in tvd.CIFAR10.test_list]
    )
    parts = [_cifar_batch(root, f) for f in names]
    return torch.cat([x for x, _ in parts]), torch.cat([t for _, t in parts])


# --------------------------------------------------------------------------- common


def channel_moments(x: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of uint8 images ``(N, C, H, W)`` on [0, 1].

    Sums of the integer pixels are exact in float64, so the result does not depend on order.
    """
    s1 = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s1)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk].to(torch.float64)
        s1 += part.sum(dim=(0, 2, 3))
        s2 += (part * part).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s1 / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt()
    return mean / 255, torch.where(std > 0, std / 255, torch.ones_like(std))


def image_dataset(
    cfg: DataConfig, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
) -> Dataset:
    """Select the splits of uint8 images ``(N, C, H, W)`` with int64 labels and scale them."""
    (x_pool, y_pool), (x_te, y_te) = train, test
    tr, va = (torch.from_numpy(i) for i in train_val_indices(len(x_pool), cfg))
    te = torch.from_numpy(test_indices(len(x_te), cfg))
    raw = [(x_pool[tr], y_pool[tr]), (x_pool[va], y_pool[va]), (x_te[te], y_te[te])]
    sig = signature(cfg)
    mean, std = torch.zeros(()), torch.ones(())
    if cfg.standardize:
        mean, std = (m.to(torch.float32).view(1, -1, 1, 1) for m in channel_moments(raw[0][0]))
    xs, ts = [], []
    for x, y in raw:
        xf = x.to(torch.float32).div_(255)
        if cfg.target == "input":
            xs.append(xf)
            ts.append(xf.flatten(1).clone())
        else:
            xs.append(xf.sub_(mean).div_(std))  # in place: full CIFAR-10 is 600 MB of floats
            ts.append(y)
    return Dataset(
        cfg.name, xs[0], ts[0], xs[2], ts[2], sig.task, sig.output_dim, x_val=xs[1], t_val=ts[1]
    )


def load_images(cfg: DataConfig, root: Path) -> Dataset:
    """Load ``cfg.name`` (``mnist``, ``fashion_mnist`` or ``cifar10``) from ``root``."""
    if get_spec(cfg.name).kind != "image":
        raise ValueError(f"{cfg.name!r} is not an image data set")
    if cfg.name == "cifar10":
        _cifar_meta(root)
        return image_dataset(cfg, _cifar_split(root, True), _cifar_split(root, False))
    return image_dataset(cfg, _idx_split(cfg, root, True), _idx_split(cfg, root, False))
