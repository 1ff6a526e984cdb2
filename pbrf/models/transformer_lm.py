"""Decoder-only Transformer language model (Bae et al. 2022, Section 6.1 / Appendix E.3).

The paper's language-modelling experiment uses a small (2-layer) Transformer LM. Built here:

* token embedding ``(vocab, d_model)`` plus a learned positional embedding
  ``(max_len, d_model)`` with ``max_len = input_shape[0]``;
* ``n_layers`` pre-LayerNorm blocks ``h = h + Attn(LN(h)); h = h + MLP(LN(h))`` where
  ``Attn`` is causal multi-head self-attention written with explicit matmuls (fused QKV
  projection, ``softmax(q k^T / sqrt(d_head))`` with future positions replaced by
  ``torch.finfo(dtype).min``, so it is finite in float32 and float64 and works under
  ``vmap``/``jvp``) and ``MLP`` is ``Linear(d_model, d_ff) -> GELU -> Linear(d_ff, d_model)``;
* a final LayerNorm and an untied ``Linear(d_model, vocab)`` head.

No dropout, no buffers: the causal mask is built in ``forward``. LayerNorm normalises each
token separately, so the output for a sequence does not depend on the rest of the batch.
Linear and embedding weights are initialised ``N(0, 0.02^2)`` (GPT-2 style), biases zero.

Shapes: ``x`` ``(B, T)`` int64 token ids with ``T <= max_len`` -> logits ``(B, T, vocab)`` with
``vocab = output_dim``; the logits at position t depend only on tokens ``0..t``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_int, check_shape


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with explicit matmuls (no ``nn.MultiheadAttention``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, h: Tensor) -> Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(h).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.n_heads, self.d_head).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, T)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        out = scores.softmax(dim=-1) @ v  # (B, H, T, d_head)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: attention and GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class TransformerLM(nn.Module):
    """Token + positional embeddings, ``n_layers`` :class:`Block` s, final LayerNorm, head."""

    def __init__(
        self,
        max_len: int,
        vocab: int,
        d_model: int = 256,
        n_heads: int = 2,
        n_layers: int = 2,
        d_ff: int | None = None,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Parameter(torch.empty(max_len, d_model))
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.blocks = nn.Sequential(*(Block(d_model, n_heads, d_ff) for _ in range(n_layers)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        nn.init.normal_(self.pos_emb, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] > self.max_len:
            raise ValueError(
                f"transformer_lm expects token ids of shape (B, T) with T <= {self.max_len}, "
                f"got {tuple(x.shape)}"
            )
        if x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"transformer_lm expects integer token ids, got {x.dtype}")
        h = self.tok_emb(x) + self.pos_emb[: x.shape[1]]
        return self.head(self.ln_f(self.blocks(h)))


def build(
    input_shape: tuple[int, ...],
    output_dim: int,
    *,
    d_model: int = 256,
    n_heads: int = 2,
    n_layers: int = 2,
    d_ff: int | None = None,
) -> TransformerLM:
    """Build a :class:`TransformerLM` for sequences of ``input_shape = (seq_len,)`` tokens."""
    (seq_len,) = check_shape(input_shape, ndim=1, what="transformer_lm")
    d_model = check_int("d_model", d_model)
    n_heads = check_int("n_heads", n_heads)
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    return TransformerLM(
        seq_len,
        output_dim,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=check_int("n_layers", n_layers),
        d_ff=None if d_ff is None else check_int("d_ff", d_ff),
    )
