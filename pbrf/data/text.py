"""Penn Treebank, word level, from Mikolov's preprocessed ``ptb.{train,valid,test}.txt``.

Each line is a sentence of space-separated words (already lower-cased, numbers as ``N``, rare
words as ``<unk>``); ``<eos>`` ends every line. The vocabulary is read from the training file,
ids in order of first appearance (the published files give 10,000 words); a validation or test
word outside it is an error. Each split's token stream is cut into non-overlapping windows of
``seq_len + 1`` tokens (a remainder is dropped): inputs are the first ``seq_len`` ids, targets
the last ``seq_len`` — shape ``(N, seq_len)``, int64. One training example is one window.

The validation split is always ``ptb.valid.txt`` (``validation_fraction`` must stay 0);
``fraction``, ``train_size`` and ``test_size`` select windows with the usual seeded subsets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pbrf.data.config import DataConfig
from pbrf.data.dataset import Dataset
from pbrf.data.errors import MalformedDataError
from pbrf.data.registry import signature
from pbrf.data.splits import test_indices, train_val_indices

EOS = "<eos>"


def read_lines(path: Path) -> list[list[str]]:
    """Words of each line of a UTF-8 text file (the final newline ends the last line)."""
    data = path.read_bytes()
    if not data.strip():
        raise MalformedDataError(path, "is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedDataError(
            path, "is not UTF-8 text", row=data[: e.start].count(b"\n") + 1
        ) from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.split() for line in lines]


def build_vocabulary(lines: list[list[str]]) -> dict[str, int]:
    """Word → id, in order of first appearance, ``<eos>`` after the first line's words."""
    vocab: dict[str, int] = {}
    for words in lines:
        for w in [*words, EOS]:
            vocab.setdefault(w, len(vocab))
    return vocab


def encode(path: Path, lines: list[list[str]], vocab: dict[str, int]) -> np.ndarray:
    """Token ids of ``lines`` with ``<eos>`` after each; an unknown word names its row/column."""
    ids: list[int] = []
    for r, words in enumerate(lines, start=1):
        for c, w in enumerate(words, start=1):
            if w not in vocab:
                raise MalformedDataError(
                    path, f"word {w!r} is not in the training vocabulary", row=r, column=c
                )
            ids.append(vocab[w])
        ids.append(vocab[EOS])
    return np.asarray(ids, dtype=np.int64)


def windows(path: Path, ids: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of the non-overlapping ``seq_len + 1`` windows of ``ids``."""
    n = len(ids) // (seq_len + 1)
    if n < 1:
        raise MalformedDataError(
            path, f"has {len(ids)} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}"
        )
    w = torch.from_numpy(ids[: n * (seq_len + 1)].reshape(n, seq_len + 1))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def load_ptb(cfg: DataConfig, root: Path) -> Dataset:
    """Load ``ptb.{train,valid,test}.txt`` from ``root`` as windows of ``cfg.seq_len`` tokens."""
    paths = [root / f"ptb.{split}.txt" for split in ("train", "valid", "test")]
    train_lines = read_lines(paths[0])
    vocab = build_vocabulary(train_lines)
    splits = []
    for path, lines in zip(paths, [train_lines, *(read_lines(p) for p in paths[1:])], strict=True):
        splits.append(windows(path, encode(path, lines, vocab), cfg.seq_len))
    (x_pool, t_pool), (x_va, t_va), (x_te, t_te) = splits
    tr, _ = train_val_indices(len(x_pool), cfg)
    te = test_indices(len(x_te), cfg)
    return Dataset(
        cfg.name,
        x_pool[torch.from_numpy(tr)],
        t_pool[torch.from_numpy(tr)],
        x_te[torch.from_numpy(te)],
        t_te[torch.from_numpy(te)],
        signature(cfg).task,
        len(vocab),
        x_val=x_va,
        t_val=t_va,
        vocabulary=tuple(vocab),
    )
