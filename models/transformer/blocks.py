"""nanoGPT-style pre-LayerNorm transformer blocks (plain ``nn.Module``s).

``Block(x) = x + MLP(LN(x + Attn(LN(x))))``, written as two residual branches. Attention uses
``F.scaled_dot_product_attention`` and is causal by default; ``causal=False`` gives the bidirectional
(BERT-style) variant. A causal attention layer can carry a KV cache for incremental decoding: the keys and values
of the tokens seen so far go in as ``past`` and come out extended by those of the new tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Keys and values of the tokens seen so far, each (B, n_head, T_past, head_dim).
KVCache = tuple[torch.Tensor, torch.Tensor]


def causal_mask(t_new: int, t_past: int, device: torch.device) -> torch.Tensor:
    """(t_new, t_past + t_new) bool mask, True where new query i may attend key j (j <= t_past + i)."""
    rows = torch.arange(t_new, device=device).unsqueeze(1) + t_past
    cols = torch.arange(t_past + t_new, device=device).unsqueeze(0)
    return cols <= rows


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention (causal unless ``causal=False``) with an optional KV cache.

    Args:
        n_embd: Model width C (divisible by ``n_head``).
        n_head: Number of heads.
        dropout: Dropout on the attention weights and on the output projection (training only).
        causal: Whether position t attends only to positions <= t.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head, self.head_dim, self.causal = n_head, n_embd // n_head, causal
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, nh, T, hs)
        b, t, _ = x.shape
        return x.view(b, t, self.n_head, self.head_dim).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, past: KVCache | None = None, attn_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Attends the new tokens ``x`` to the cached ones and to themselves.

        Args:
            x: (B, T, C) inputs of the new tokens.
            past: Cached keys and values of earlier tokens, each (B, nh, T_past, hs); None for none.
            attn_mask: Optional extra (T, T_past + T) or broadcastable bool mask (True = may attend), combined
                with the causal mask (e.g. key padding for a bidirectional model).

        Returns:
            The (B, T, C) outputs and the keys/values of all T_past + T tokens (the next step's ``past``).
        """
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)  # (B, nh, T, hs)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, T_past + T, hs)
            v = torch.cat([past[1], v], dim=2)
        t_past = k.shape[2] - t
        mask = attn_mask
        if self.causal and (t > 1 or mask is not None):  # one new token may attend every cached one
            causal = causal_mask(t, t_past, x.device)
            mask = causal if mask is None else mask & causal
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y)), (k, v)


class MLP(nn.Module):
    """Linear(C, 4C) → GELU → Linear(4C, C) → dropout."""

    def __init__(self, n_embd: int, dropout: float = 0.0, expansion: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, expansion * n_embd)
        self.proj = nn.Linear(expansion * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``.

    Args:
        n_embd: Width C. n_head: Heads. dropout: Dropout rate.
        causal: Causal (GPT) or bidirectional (BERT/MaskGIT/ViT) attention.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, causal=causal)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(
        self, x: torch.Tensor, past: KVCache | None = None, attn_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """(B, T, C) → (B, T, C) and this layer's keys/values (see :meth:`CausalSelfAttention.forward`)."""
        a, present = self.attn(self.ln_1(x), past=past, attn_mask=attn_mask)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


def init_gpt_weights(module: nn.Module, n_layer: int) -> None:
    """nanoGPT initialization: N(0, 0.02) for linear and embedding weights, zero biases, and residual output
    projections (``*.proj``) scaled by 1/sqrt(2·n_layer) (GPT-2)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = 0.02 / (2 * n_layer) ** 0.5 if name.endswith("proj") else 0.02
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
