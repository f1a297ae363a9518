"""DALL·E-style text-to-image GPT (Ramesh et al., 2021) with classifier-free guidance (Ho & Salimans, 2022).

One causal transformer reads ``[caption tokens (L), BOS, image tokens]``: the caption (the datamodule's word ids,
right-padded with 0) is a prefix, and the image tokens are predicted after it. Caption and image ids share one
input embedding table (image token k has input id ``vocab_size + k``) and one learned position table over L + N
positions; padding is an ordinary token (id 0), so the all-padding caption is the "null caption".

Training drops each caption to the null caption with probability ``p_uncond``, so the same network learns
p(image | caption) and p(image). At sampling, with ``guidance_scale`` g ≠ 1 the logits of each image token are
``uncond + g · (cond − uncond)``; cond and uncond rows run as one batch sharing the sampled tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import TextToImageGenerator
from models.registry import MODELS
from models.transformer.config import Text2ImageConfig, field_defaults
from models.transformer.gpt import GPT

#: Defaults of ``text2image-gpt``'s arguments (:class:`~models.transformer.config.Text2ImageConfig`).
DEFAULTS = field_defaults(Text2ImageConfig)


@MODELS.register("text2image-gpt")
class Text2ImageGPT(GPT, TextToImageGenerator):
    """GPT over [caption, image tokens] with classifier-free guidance (see the module docstring).

    ``sample(n)`` is unconditional (the null caption); ``sample_from_text(text)`` is conditional, guided by
    ``guidance_scale``; ``nll(x)`` is the exact NLL of the quantized image under the unconditional model
    p(image | null caption).

    Args:
        image_shape, vocab_size, text_length, p_uncond, guidance_scale, text_loss_weight, n_layer, n_head, n_embd,
        dropout, tokenizer, levels, token_size, tokenizer_weights, temperature, top_k, lr, weight_decay,
        warmup_steps, cosine_decay: The fields of :class:`~models.transformer.config.Text2ImageConfig` (those of
        ``gpt`` plus the caption's vocabulary and length, from the data spec, and the guidance settings).

    Raises:
        ValueError: Without a caption vocabulary (``vocab_size < 2``) or length (``text_length < 1``).
    """

    config: Text2ImageConfig

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        vocab_size: int = DEFAULTS.vocab_size,
        text_length: int = DEFAULTS.text_length,
        p_uncond: float = DEFAULTS.p_uncond,
        guidance_scale: float = DEFAULTS.guidance_scale,
        text_loss_weight: float = DEFAULTS.text_loss_weight,
        n_layer: int = DEFAULTS.n_layer,
        n_head: int = DEFAULTS.n_head,
        n_embd: int = DEFAULTS.n_embd,
        dropout: float = DEFAULTS.dropout,
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
        # Past GPT.__init__ (which makes a config of GPT's own arguments) to its base; GPT's network on this config.
        super(GPT, self).__init__(Text2ImageConfig.pick(locals()))
        self.save_hyperparameters()
        self.build_network()
        self.text_head = nn.Linear(n_embd, vocab_size, bias=False) if text_loss_weight > 0 else None
        if self.text_head is not None:
            nn.init.normal_(self.text_head.weight, std=0.02)

    def prefix_spec(self) -> tuple[int, int]:
        return self.config.vocab_size, self.config.text_length

    def required_modalities(self) -> tuple[str, ...]:
        return ("image", "text")

    # ------------------------------------------------------------------------------------------------ captions
    def fit_text(self, text: torch.Tensor) -> torch.Tensor:
        """Right-pads with 0 or truncates (B, L') caption ids to (B, text_length), on the model's device."""
        text = text.long().to(self.device)
        length = self.prefix_len
        if text.shape[1] >= length:
            return text[:, :length]
        return F.pad(text, (0, length - text.shape[1]), value=0)

    def null_text(self, n: int) -> torch.Tensor:
        """(n, L) all-padding null captions."""
        return torch.zeros(n, self.prefix_len, dtype=torch.long, device=self.device)

    def drop_captions(self, text: torch.Tensor) -> torch.Tensor:
        """Replaces each caption by the null caption with probability ``p_uncond`` (global RNG)."""
        drop = torch.rand(len(text), device=text.device) < self.hparams.p_uncond  # (B,)
        return text.masked_fill(drop.unsqueeze(1), 0)

    def guided_logits(self, tokens: torch.Tensor, text: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """Teacher-forced guided logits ``uncond + g · (cond − uncond)`` of (B, N) image tokens: (B, N, V)."""
        text = self.fit_text(text)
        cond = self.image_logits(tokens, text)
        uncond = self.image_logits(tokens, self.null_text(len(text)))
        return uncond + guidance_scale * (cond - uncond)

    # ------------------------------------------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        """Image next-token cross-entropy given the caption (dropped to null with ``p_uncond`` in training),
        plus ``text_loss_weight`` × the caption's next-token cross-entropy."""
        tokens = self.tokenizer.encode(batch["image"])  # (B, N)
        text = self.fit_text(batch["text"])  # (B, L)
        if stage == "train":
            text = self.drop_captions(text)
        h, _ = self.hidden(self.build_inputs(tokens, text))  # (B, L + N, C)
        image_loss = F.cross_entropy(self.head(h[:, self.prefix_len:]).flatten(0, 1), tokens.flatten())
        terms = {"loss": image_loss, "image_loss": image_loss}
        if self.text_head is not None and self.prefix_len > 1:
            text_logits = self.text_head(h[:, : self.prefix_len - 1])  # position t predicts caption token t + 1
            targets = text[:, 1:]
            if (targets != 0).any():
                text_loss = F.cross_entropy(text_logits.flatten(0, 1), targets.flatten(), ignore_index=0)
            else:
                text_loss = text_logits.sum() * 0.0
            terms["text_loss"] = text_loss
            terms["loss"] = image_loss + self.hparams.text_loss_weight * text_loss
        return terms

    # ------------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_from_text(self, text: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        text = self.fit_text(text)
        tokens = self.generate_tokens(
            len(text), generator=generator, prefix=text, null_prefix=self.null_text(len(text)),
            guidance_scale=float(self.hparams.guidance_scale),
        )
        return self.tokenizer.decode(tokens).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` unconditional images (null caption, no guidance)."""
        tokens = self.generate_tokens(n, generator=generator, prefix=self.null_text(n))
        return self.tokenizer.decode(tokens).to(self.device)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact NLL (nats) of the quantized image under p(image | null caption)."""
        if self.hparams.tokenizer != "pixel":
            return super().nll(x)  # raises: NLL of codes
        return self.token_nll_given(self.tokenizer.encode(x), self.null_text(len(x)))

    def token_nll_given(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Σ_t −log p(token_t | token_<t, caption), (B,) nats."""
        logits = self.image_logits(tokens, self.fit_text(text))
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), reduction="none")
        return ce.view(tokens.shape).sum(1)

    def token_nll(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_nll_given(tokens, self.null_text(len(tokens)))
