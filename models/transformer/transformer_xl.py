"""Transformer-XL (Dai et al., 2019) over image tokens: segment-level recurrence with relative positions.

The input ``[BOS, token_0, …, token_{N−2}]`` is cut into segments of ``segment_len`` tokens, processed in order.
Layer l of a segment attends to its own earlier positions in the segment and to a *memory*: the layer-l inputs
(hidden states) of the previous ``mem_len`` tokens, cached from the preceding segments with the gradient stopped
(``detach``). Positions are relative, with the paper's parametrization: sinusoidal embeddings R of the distance
i − j, projected per layer (``W_{k,R}``), and two learned per-head biases u (content) and v (position):

    score(i, j) = (q_i + u)·k_j + (q_i + v)·(W_{k,R} R_{i−j}),

the position term computed for all distances at once and aligned with the "relative shift" trick. There are no
absolute positions: inside an image the model locates itself only through its context (the first segment, which
has no memory, starts at the image's first token).

Sampling runs token by token with the memory, reproducing the training context exactly: within a segment a
token sees the segment's earlier tokens and the memory fixed at the segment's start; the memory is updated
when a segment is complete. So the likelihood (``nll``) is exact for the distribution ``sample`` draws from.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import MODELS
from models.transformer.blocks import MLP, causal_mask, init_gpt_weights
from models.transformer.config import TransformerConfig, TransformerXLConfig, field_defaults
from models.transformer.gpt import GPT, AutoregressiveImageModel

#: Defaults of ``transformer-xl``'s arguments (:class:`~models.transformer.config.TransformerXLConfig`).
DEFAULTS = field_defaults(TransformerXLConfig)


def sinusoid_embedding(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids of (K,) distances → (K, dim): [sin(d·f_i), cos(d·f_i)], f_i = 10000^(−2i/dim)."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=distances.device).float() / dim)
    angles = distances.float().unsqueeze(1) * freqs.unsqueeze(0)  # (K, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Aligns relative-position scores: (B, nh, T, K) with column c for distance K − 1 − c → entry [i, j] for
    distance (K − T + i) − j (query i is at absolute position K − T + i). Entries with j > K − T + i (future keys,
    masked anyway) hold unrelated values. Dai et al.'s pad-reshape trick."""
    b, h, t, k = x.shape
    padded = F.pad(x, (1, 0))  # (B, nh, T, K + 1): a zero column in front
    return padded.view(b, h, k + 1, t)[:, :, 1:].reshape(b, h, t, k)


class RelativeMultiHeadAttention(nn.Module):
    """Causal multi-head attention over [memory, segment] with Transformer-XL relative positions.

    Args:
        n_embd: Width C. n_head: Heads. dropout: Dropout on attention weights and output.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.q = nn.Linear(n_embd, n_embd)
        self.kv = nn.Linear(n_embd, 2 * n_embd)
        self.r_net = nn.Linear(n_embd, n_embd, bias=False)  # W_{k,R}
        self.u = nn.Parameter(torch.zeros(n_head, self.head_dim))  # content bias
        self.v = nn.Parameter(torch.zeros(n_head, self.head_dim))  # position bias
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def position_scores(self, q: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """(q + v)·(W_{k,R} R) before the shift: q (B, nh, T, hs), pos_emb (K, C) → (B, nh, T, K)."""
        r = self.r_net(pos_emb).view(-1, self.n_head, self.head_dim).transpose(0, 1)  # (nh, K, hs)
        return (q + self.v.unsqueeze(1)) @ r.transpose(1, 2).unsqueeze(0)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """Attends the segment to the memory and to itself.

        Args:
            x: (B, T, C) normalized segment inputs.
            mem: (B, M, C) normalized memory (M may be 0).
            pos_emb: (M + T, C) sinusoids of the distances M + T − 1, …, 0.

        Returns:
            (B, T, C).
        """
        b, t, c = x.shape
        cat = torch.cat([mem, x], dim=1)  # (B, K, C), K = M + T
        k_len = cat.shape[1]
        q = self.q(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv(cat).view(b, k_len, 2, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, nh, K, hs)
        scale = 1.0 / math.sqrt(self.head_dim)
        bd = rel_shift(self.position_scores(q, pos_emb))  # (B, nh, T, K)
        allowed = causal_mask(t, k_len - t, x.device)  # (T, K)
        bias = (bd * scale).masked_fill(~allowed, float("-inf"))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q + self.u.unsqueeze(1), k, v, attn_mask=bias, dropout_p=drop)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class XLBlock(nn.Module):
    """Pre-LN block with relative attention: the memory is normalized by the same LayerNorm as the segment."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = RelativeMultiHeadAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """(B, T, C) segment, (B, M, C) memory of this layer's inputs → (B, T, C)."""
        x = x + self.attn(self.ln_1(x), self.ln_1(mem), pos_emb)
        return x + self.mlp(self.ln_2(x))


@MODELS.register("transformer-xl")
class TransformerXL(AutoregressiveImageModel):
    """Transformer-XL prior over image tokens (see the module docstring for the recurrence and positions).

    Same tokenizer, sampling (temperature, top-k, CPU generator), likelihood and training interface as ``gpt``.
    Relative positions: the paper's sinusoidal relative embeddings with per-layer projection, u/v biases and the
    rel-shift trick (not a learned bias table). Per layer it has ``C² + 2C`` parameters more than a GPT block
    (W_{k,R}, u, v) and no absolute position table; :meth:`gpt_matched_hparams` picks the width at which it matches
    a ``gpt`` configuration's parameter count. With the defaults on 28×28 images (16 levels, 14×14 tokens):
    ``gpt`` (C=128) has 822,656 parameters and ``transformer-xl`` at its matched width C=124 (the default) has
    811,332 (−1.4%).

    Args:
        image_shape, n_layer, n_head, n_embd, dropout, segment_len, mem_len, tokenizer, levels, token_size,
        tokenizer_weights, temperature, top_k, lr, weight_decay, warmup_steps, cosine_decay: The fields of
        :class:`~models.transformer.config.TransformerXLConfig` (those of ``gpt`` plus the segment and memory
        lengths).
    """

    config: TransformerXLConfig

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        n_layer: int = DEFAULTS.n_layer,
        n_head: int = DEFAULTS.n_head,
        n_embd: int = DEFAULTS.n_embd,
        dropout: float = DEFAULTS.dropout,
        segment_len: int = DEFAULTS.segment_len,
        mem_len: int = DEFAULTS.mem_len,
        tokenizer: str = DEFAULTS.tokenizer,
        levels: int = DEFAULTS.levels,
        token_size: int = DEFAULTS.token_size,
        tokenizer_weights: str | None = DEFAULTS.tokenizer_weights,
        temperature: float = DEFAULTS.temperature,
        top_k: int = DEFAULTS.top_k,
        lr: float = DEFAULTS.lr,
        weight_decay: float = DEFAULTS.weight_decay,
        warmup_steps: int = DEFAULTS.warmup_steps,
        cosine_decay: bool = DEFAULTS.cosine_decay,
    ) -> None:
        super().__init__(TransformerXLConfig.pick(locals()))
        self.save_hyperparameters()
        cfg = self.config
        self.segment_len, self.mem_len = cfg.segment_len, cfg.mem_len
        self.tok_emb = nn.Embedding(self.vocab + 1, cfg.n_embd)  # + BOS
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(XLBlock(cfg.n_embd, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, self.vocab, bias=False)
        init_gpt_weights(self, cfg.n_layer)

    @classmethod
    def gpt_matched_hparams(cls, image_shape: tuple[int, int, int] = (1, 28, 28), **gpt_hparams: Any) -> dict[str, Any]:
        """Transformer-XL hparams whose parameter count is closest to ``gpt(image_shape, **gpt_hparams)``'s.

        Everything but the width is copied from the GPT configuration; the width is searched over multiples of
        ``n_head`` up to twice the GPT's (the XL layers are slightly larger, but the GPT has a position table of
        N × C: with one token per pixel of a 28×28 image it is a third of a 2 × 64 GPT, and the matched XL is
        wider than the GPT).
        """
        target = GPT(image_shape=image_shape, **gpt_hparams).num_parameters()
        gpt_defaults = field_defaults(TransformerConfig)
        n_head = int(gpt_hparams.get("n_head", gpt_defaults.n_head))
        n_embd = int(gpt_hparams.get("n_embd", gpt_defaults.n_embd))
        shared = {k: v for k, v in gpt_hparams.items() if k != "n_embd"}
        best: tuple[float, int] | None = None
        for width in range(n_head, 2 * n_embd + 1, n_head):
            count = cls(image_shape=image_shape, n_embd=width, **shared).num_parameters()
            gap = abs(count - target)
            if best is None or gap < best[0]:
                best = (gap, width)
        assert best is not None
        return {"image_shape": image_shape, **shared, "n_embd": best[1]}

    # ------------------------------------------------------------------------------------------------ forward
    def init_memory(self, batch_size: int) -> list[torch.Tensor]:
        """Empty per-layer memories, each (B, 0, C)."""
        c = self.config.n_embd
        return [torch.zeros(batch_size, 0, c, device=self.device) for _ in self.blocks]

    def forward(self, idx: torch.Tensor, mems: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One segment: (B, T) input ids and per-layer memories (B, M, C) → (B, T, vocab) logits and the next
        memories: the last ``mem_len`` of [memory, this segment's layer inputs], detached (stop-gradient)."""
        logits, inputs = self.forward_with_layer_inputs(idx, mems)
        return logits, [self.update_memory(mem, x) for mem, x in zip(mems, inputs)]

    def forward_with_layer_inputs(
        self, idx: torch.Tensor, contexts: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T) input ids attending to per-layer contexts (B, M, C) → (B, T, vocab) logits and the (B, T, C)
        input of every layer (what the memory and the sampling cache are made of)."""
        x = self.drop(self.tok_emb(idx))  # (B, T, C)
        k_len = contexts[0].shape[1] + idx.shape[1]
        distances = torch.arange(k_len - 1, -1, -1, device=idx.device)  # K − 1, …, 0
        pos_emb = self.drop(sinusoid_embedding(distances, self.config.n_embd))  # (K, C)
        inputs = []
        for block, context in zip(self.blocks, contexts):
            inputs.append(x)
            x = block(x, context, pos_emb)
        return self.head(self.ln_f(x)), inputs

    def update_memory(self, mem: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The last ``mem_len`` hidden states of [mem, hidden], detached: (B, ≤ mem_len, C)."""
        if self.mem_len == 0:
            return mem[:, :0].detach()
        return torch.cat([mem, hidden], dim=1)[:, -self.mem_len:].detach()

    def build_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[BOS, tokens[:-1]]``: (B, N) → (B, N) input ids."""
        bos = torch.full((len(tokens), 1), self.bos, dtype=torch.long, device=tokens.device)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def image_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        idx = self.build_inputs(tokens)
        mems, out = self.init_memory(len(tokens)), []
        for start in range(0, idx.shape[1], self.segment_len):
            logits, mems = self(idx[:, start:start + self.segment_len], mems)
            out.append(logits)
        return torch.cat(out, dim=1)  # (B, N, V)

    # ------------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate_tokens(
        self,
        n: int,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        return_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Token-by-token sampling. ``use_cache=True`` keeps, per layer, the memory fixed at the segment's start
        and the layer inputs of the segment's tokens drawn so far, and runs only the new token through the layers
        attending to [memory, segment so far] (a single query at the end of its context needs no relative shift);
        ``False`` recomputes every segment from the start each step (teacher-forced :meth:`image_logits` on the
        tokens so far). Both give the same tokens."""
        device = self.device
        tokens = torch.zeros(n, self.seq_len, dtype=torch.long, device=device)
        idx = self.build_inputs(tokens)  # rewritten as tokens are drawn
        mems = self.init_memory(n)
        segment = self.init_memory(n)  # per layer: (n, s, C) inputs of the current segment's first s tokens
        all_logits = []
        for p in range(self.seq_len):
            if use_cache:
                if p and p % self.segment_len == 0:  # a segment is complete: its layer inputs join the memory
                    mems = [self.update_memory(m, h) for m, h in zip(mems, segment)]
                    segment = self.init_memory(n)
                contexts = [torch.cat([m, h], dim=1) for m, h in zip(mems, segment)]  # (n, M + s, C)
                out, inputs = self.forward_with_layer_inputs(idx[:, p:p + 1], contexts)
                segment = [torch.cat([h, x], dim=1) for h, x in zip(segment, inputs)]
                logits = out[:, -1]
            else:
                logits = self.image_logits(tokens)[:, p]  # causal: tokens >= p do not matter
            logits = logits.float()
            tok = self.pick_tokens(logits, generator)
            tokens[:, p] = tok
            if p + 1 < self.seq_len:
                idx[:, p + 1] = tok
            all_logits.append(logits)
        return (tokens, torch.stack(all_logits, dim=1)) if return_logits else tokens
