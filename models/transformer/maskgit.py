"""MaskGIT (Chang et al., 2022): a bidirectional masked-token transformer over image tokens, decoded in parallel.

Training (the paper's Sec. 3.1): tokenize the image (:data:`models.transformer.tokenizers.TOKENIZERS`), draw
a mask ratio ``r = cos(π/2 · u)``, ``u ~ U(0, 1)``, per image, replace ``max(1, ceil(r·N))`` randomly chosen of the
N positions by a [MASK] token, and minimise the cross-entropy of the true tokens at the masked positions only.

Sampling (Sec. 3.2): start from N [MASK] tokens; at step t = 0 … T−1 predict every masked position at once, sample
a token for each, and keep the most confident ones, re-masking the rest so that
``n_t = floor(N · cos(π/2 · (t+1)/T))`` positions are still masked after step t (``n_{T−1} = 0``). Confidence is
the log-probability of the sampled token plus Gumbel noise scaled by ``choice_temperature · (1 − (t+1)/T)`` (an
annealed temperature: random choices early, greedy ones late). A decoded token is never re-masked. All sampling
noise is drawn on the CPU from the caller's ``generator``, so samples are reproducible on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ImageGenerator
from models.registry import MODELS
from models.transformer.config import MaskGITConfig, field_defaults
from models.transformer.vit import EncoderBlock, init_transformer_weights

#: Defaults of ``maskgit``'s arguments (:class:`~models.transformer.config.MaskGITConfig`).
DEFAULTS = field_defaults(MaskGITConfig)


# ---------------------------------------------------------------------------------------------- schedule helpers
def cosine_mask_ratio(progress: torch.Tensor | float) -> torch.Tensor:
    """The cosine mask schedule γ(p) = cos(π/2 · p): 1 (all masked) at p = 0, 0 at p = 1."""
    return torch.cos(math.pi / 2 * torch.as_tensor(progress, dtype=torch.float64))


def num_masked_after_step(num_tokens: int, step: int, num_steps: int) -> int:
    """How many of ``num_tokens`` positions are still masked after decoding step ``step`` (0-based) of
    ``num_steps``: ``floor(N · cos(π/2 · (step+1)/T))``, exactly 0 after the last step."""
    if not 0 <= step < num_steps:
        raise ValueError(f"step must be in [0, {num_steps}), got {step}")
    if step == num_steps - 1:
        return 0  # cos(π/2) is 6e-17 in floating point, not 0
    return int(math.floor(num_tokens * math.cos(math.pi / 2 * (step + 1) / num_steps)))


def sample_mask_ratios(batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) training mask ratios ``cos(π/2 · u)``, u ~ U(0, 1) drawn on the CPU (mean 2/π)."""
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    return cosine_mask_ratio(u)


def random_token_mask(
    batch_size: int, num_tokens: int, generator: torch.Generator | None = None
) -> torch.Tensor:  # -> (B, N) bool
    """A training mask: per row, ``max(1, ceil(r·N))`` uniformly chosen positions with r from
    :func:`sample_mask_ratios` (True = masked). Drawn on the CPU."""
    ratios = sample_mask_ratios(batch_size, generator)  # (B,)
    counts = torch.ceil(ratios * num_tokens).long().clamp(1, num_tokens)  # (B,)
    scores = torch.rand(batch_size, num_tokens, generator=generator)  # (B, N)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, N) rank of each position, a random permutation
    return ranks < counts.unsqueeze(1)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions only.

    Args:
        logits: (B, N, V) token logits. targets: (B, N) true token ids. mask: (B, N) bool, True where masked.

    Returns:
        Scalar: the sum of ``-log p(target)`` over masked positions divided by their number.
    """
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, N)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)`` drawn on the CPU."""
    u = torch.rand(shape, generator=generator).clamp_(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


@dataclass(frozen=True)
class DecodingTrace:
    """What iterative decoding did, for inspection and tests.

    Attributes:
        tokens: (num_steps + 1) tensors of (n, N) token ids with ``mask_id`` at still-masked positions: the
            all-masked start, then the state after each step.
        mask_id: The [MASK] token id.
    """

    tokens: list[torch.Tensor]
    mask_id: int

    @property
    def masked_counts(self) -> list[list[int]]:
        """Per step after the start, the number of masked positions of each sample."""
        return [(t == self.mask_id).sum(1).tolist() for t in self.tokens[1:]]


# ---------------------------------------------------------------------------------------------------- the model
@MODELS.register("maskgit")
class MaskGIT(ImageGenerator):
    """Bidirectional masked-token image generator with iterative parallel decoding (cosine schedule).

    Args:
        image_shape, tokenizer, levels, token_size, tokenizer_weights, dim, depth, heads, mlp_ratio, dropout,
        num_steps, choice_temperature, sample_temperature, lr, weight_decay: The fields of
        :class:`~models.transformer.config.MaskGITConfig` (meaning and defaults). The network is built from
        ``self.config``; the decoding settings (``num_steps``, the temperatures) and the optimizer's are read from
        ``self.hparams`` when used, so they can be changed on a built model.
    """

    family = "transformer"
    config: MaskGITConfig

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        tokenizer: str = DEFAULTS.tokenizer,
        levels: int = DEFAULTS.levels,
        token_size: int | None = DEFAULTS.token_size,
        tokenizer_weights: str | None = DEFAULTS.tokenizer_weights,
        dim: int = DEFAULTS.dim,
        depth: int = DEFAULTS.depth,
        heads: int = DEFAULTS.heads,
        mlp_ratio: float = DEFAULTS.mlp_ratio,
        dropout: float = DEFAULTS.dropout,
        num_steps: int = DEFAULTS.num_steps,
        choice_temperature: float = DEFAULTS.choice_temperature,
        sample_temperature: float = DEFAULTS.sample_temperature,
        lr: float = DEFAULTS.lr,
        weight_decay: float = DEFAULTS.weight_decay,
    ) -> None:
        config = MaskGITConfig.pick(locals())
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.image_shape = config.image_shape
        self.tokenizer = config.build_tokenizer()
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)
        self.vocab_size = int(self.tokenizer.vocab_size)
        self.seq_len = int(self.tokenizer.seq_len)
        self.mask_id = self.vocab_size  # the extra input token

        dim = config.dim
        self.tok_embed = nn.Embedding(self.vocab_size + 1, dim)
        self.pos = nn.Parameter(torch.zeros(1, self.seq_len, dim))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.vocab_size)  # predicts real tokens only, never [MASK]
        for module in (self.tok_embed, self.blocks, self.norm, self.head):
            module.apply(init_transformer_weights)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, N) long, mask_id allowed -> (B, N, V)
        """Logits of the real tokens at every position, given a partly masked sequence."""
        x = self.drop(self.tok_embed(tokens) + self.pos)  # (B, N, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, N, V)

    # --------------------------------------------------------------------------------------------------- training
    def masked_loss(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the true tokens at the masked positions, and the masked-position accuracy.

        Args:
            tokens: (B, N) true token ids. mask: (B, N) bool, True where the input is replaced by [MASK].
        """
        inputs = tokens.masked_fill(mask, self.mask_id)  # (B, N)
        logits = self(inputs)  # (B, N, V)
        loss = masked_cross_entropy(logits, tokens, mask)
        correct = ((logits.argmax(-1) == tokens) & mask).sum()
        return loss, correct.float() / mask.sum().clamp_min(1)

    def _common_step(
        self, batch: dict[str, torch.Tensor], stage: str, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Tokenizes the images, masks them (noise from ``generator``), logs ``{stage}_loss`` and
        ``{stage}_masked_acc``."""
        with torch.no_grad():
            tokens = self.tokenizer.encode(batch["image"])  # (B, N)
        mask = random_token_mask(len(tokens), self.seq_len, generator).to(tokens.device)  # (B, N)
        loss, acc = self.masked_loss(tokens, mask)
        self.log_dict({f"{stage}_loss": loss, f"{stage}_masked_acc": acc}, prog_bar=stage == "train",
                      batch_size=len(tokens), sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train", None)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # A fixed mask per validation batch: the score changes only when the model does.
        self._common_step(batch, "val", torch.Generator().manual_seed(batch_idx))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, betas=(0.9, 0.96), weight_decay=self.hparams.weight_decay)

    # --------------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate_tokens(
        self, n: int, generator: torch.Generator | None = None, num_steps: int | None = None
    ) -> DecodingTrace:
        """Iterative parallel decoding of ``n`` token sequences from all-[MASK].

        Args:
            n: Number of sequences. generator: CPU generator of all the sampling noise (None: global RNG).
            num_steps: T (default: the ``num_steps`` hyperparameter).

        Returns:
            The :class:`DecodingTrace`; ``trace.tokens[-1]`` is the (n, N) result, free of [MASK].
        """
        steps = int(self.hparams.num_steps if num_steps is None else num_steps)
        if steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {steps}")
        num_tokens, device = self.seq_len, self.device
        tokens = torch.full((n, num_tokens), self.mask_id, dtype=torch.long, device=device)  # (n, N)
        history = [tokens.clone()]
        for t in range(steps):
            masked = tokens == self.mask_id  # (n, N)
            logits = self(tokens).float() / max(self.hparams.sample_temperature, 1e-6)  # (n, N, V)
            draw = gumbel_noise(tuple(logits.shape), generator).to(device)  # Gumbel-max = a categorical draw
            sampled = (logits + draw).argmax(-1)  # (n, N)
            sampled = torch.where(masked, sampled, tokens)  # decoded tokens stay as they are
            log_probs = logits.log_softmax(-1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)  # (n, N)
            temperature = self.hparams.choice_temperature * (1.0 - (t + 1) / steps)
            confidence = log_probs + temperature * gumbel_noise((n, num_tokens), generator).to(device)
            confidence = confidence.masked_fill(~masked, math.inf)  # never re-mask a decoded token
            k = num_masked_after_step(num_tokens, t, steps)
            tokens = sampled
            if k > 0:
                remask = confidence.topk(k, dim=1, largest=False).indices  # (n, k) least confident
                tokens = tokens.scatter(1, remask, self.mask_id)
            history.append(tokens.clone())
        return DecodingTrace(tokens=history, mask_id=self.mask_id)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [0, 1]: :meth:`generate_tokens`, then the tokenizer's decoder."""
        tokens = self.generate_tokens(n, generator).tokens[-1]  # (n, N)
        return self.tokenizer.decode(tokens).to(self.device).clamp(0.0, 1.0)
