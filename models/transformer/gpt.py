"""GPT-style autoregressive prior over image tokens, and the base class the token-autoregressive models share.

An image becomes ``N = tokenizer.seq_len`` tokens (:mod:`models.transformer.tokenizers`); the model factorizes
``p(tokens) = Π_t p(token_t | token_<t)``. Its input is ``[BOS, token_0, …, token_{N−2}]`` and its output at
position t is the distribution of ``token_t``. Training minimizes the mean next-token cross-entropy; ``nll`` is
the exact sum of the N cross-entropies (nats) of the *quantized* image, i.e. −log p of the token sequence.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import LikelihoodModel
from models.registry import MODELS
from models.transformer.blocks import Block, KVCache, init_gpt_weights
from models.transformer.config import TransformerConfig, field_defaults
from models.transformer.tokenizers import ImageTokenizer, PixelTokenizer

#: Defaults of ``gpt``'s arguments (:class:`~models.transformer.config.TransformerConfig`).
DEFAULTS = field_defaults(TransformerConfig)


class AutoregressiveImageModel(LikelihoodModel):
    """Shared logic of models that generate an image's tokens one at a time (``gpt``, ``transformer-xl``, …).

    Subclasses pass their configuration (a :class:`~models.transformer.config.TransformerConfig`, typically
    ``<Config>.pick(locals())`` of their explicit keyword arguments) to this ``__init__``, which builds the
    tokenizer; they then call ``save_hyperparameters()``, build their network from ``self.config``, and implement
    :meth:`image_logits` and :meth:`generate_tokens`. This class provides the tokenizer bookkeeping, the likelihood
    protocol, token sampling (temperature, top-k, CPU ``generator``), the training/validation steps and the
    optimizer.

    Args:
        config: The model's configuration (kept as ``self.config``; frozen). The network is built from it; the
            run-time settings (``temperature``, ``top_k``, ``lr``, ``weight_decay``, ``warmup_steps``,
            ``cosine_decay``) are read from ``self.hparams`` when used, so they can be changed on a built model.
    """

    family = "transformer"
    nll_bound = "exact"
    tokenizer: ImageTokenizer
    config: TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.setup_tokenizer()

    # ------------------------------------------------------------------------------------------------- setup
    def setup_tokenizer(self) -> None:
        """Builds ``self.tokenizer`` from the config and states the likelihood it implies.

        The pixel token grid is ``min(token_size, H)`` on a side (see
        :func:`~models.transformer.tokenizers.build_tokenizer`).
        """
        self.image_shape = self.config.image_shape
        self.tokenizer = self.config.build_tokenizer()
        tok = self.tokenizer
        if isinstance(tok, PixelTokenizer):
            h, w = tok.grid
            self.likelihood = f"categorical-{tok.levels}levels-{h}x{w}(quantized intensities)"
        else:
            self.likelihood = f"categorical over {tok.describe()} codes (not a pixel likelihood)"

    @property
    def vocab(self) -> int:
        """Number of image token ids (the output classes)."""
        return self.tokenizer.vocab_size

    @property
    def seq_len(self) -> int:
        """Tokens per image."""
        return self.tokenizer.seq_len

    @property
    def bos(self) -> int:
        """Input id of the begin-of-image token (one past the image ids)."""
        return self.tokenizer.vocab_size

    def likelihood_dims(self) -> int:
        """The NLL is of the token grid, so bits/dim divides by the number of tokens (recorded in protocols)."""
        return self.tokenizer.seq_len

    # ------------------------------------------------------------------------------------------- to implement
    def image_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: (B, N) image tokens → (B, N, vocab), position t predicting token t."""
        raise NotImplementedError

    def generate_tokens(
        self,
        n: int,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        return_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draws (n, N) token sequences; with ``return_logits`` also the (n, N, vocab) logits each token was
        drawn from (before temperature and top-k)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------- sampling
    def pick_tokens(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws one token per row of (B, vocab) logits with the model's temperature and top-k.

        The draw happens on the CPU in float64 (``torch.multinomial`` with ``generator``), so a seeded generator
        gives the same tokens on every device. ``temperature <= 0`` is greedy (argmax); ``top_k <= 0`` keeps all.

        Returns:
            (B,) long on the logits' device.
        """
        temperature, top_k = float(self.hparams.temperature), int(self.hparams.top_k)
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if 0 < top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1).double().cpu()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images: tokens drawn by :meth:`generate_tokens` (KV cache / memory on), decoded."""
        return self.tokenizer.decode(self.generate_tokens(n, generator=generator)).to(self.device)

    # --------------------------------------------------------------------------------------------- likelihood
    @torch.no_grad()
    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact −log p of the quantized image's tokens, (B,) nats (``num_samples``/``generator`` unused).

        Raises:
            NotImplementedError: With a VQ tokenizer: the likelihood would be of VQ codes, not of pixels.
        """
        if not isinstance(self.tokenizer, PixelTokenizer):
            raise NotImplementedError(
                f"{self.registry_name} with a VQ tokenizer models VQ codes: its NLL is of codes, not pixels, "
                "and is not comparable with pixel likelihoods; use tokenizer='pixel'"
            )
        return self.token_nll(self.tokenizer.encode(x))

    def token_nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """Σ_t −log p(token_t | token_<t), (B,) nats, for (B, N) tokens."""
        logits = self.image_logits(tokens)  # (B, N, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), reduction="none")
        return ce.view(tokens.shape).sum(1)

    # ----------------------------------------------------------------------------------------------- training
    def training_loss(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        """Mean next-token cross-entropy (nats per token) of the batch's images."""
        tokens = self.tokenizer.encode(batch["image"])  # (B, N)
        logits = self.image_logits(tokens)  # (B, N, V)
        return {"loss": F.cross_entropy(logits.flatten(0, 1), tokens.flatten())}

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        terms = self.training_loss(batch, stage)
        self.log_dict({f"{stage}_{k}": v for k, v in terms.items()}, prog_bar=stage == "train",
                      sync_dist=stage != "train")
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        """AdamW (β = 0.9, 0.95), weight decay on matrices only (nanoGPT); optional linear warmup over
        ``warmup_steps`` and cosine decay to 10% of ``lr`` over the run's steps (``cosine_decay``)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.hparams.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=self.hparams.lr, betas=(0.9, 0.95))
        warmup = int(self.hparams.warmup_steps)
        total = float(self.trainer.estimated_stepping_batches) if self.hparams.cosine_decay else math.inf
        if warmup <= 0 and not math.isfinite(total):
            return opt

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not math.isfinite(total):
                return 1.0
            progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@MODELS.register("gpt")
class GPT(AutoregressiveImageModel):
    """GPT (Radford et al., 2018/2019; Image GPT, Chen et al., 2020) over image tokens, nanoGPT-style.

    Token + learned absolute position embeddings, ``n_layer`` pre-LN causal blocks, final LayerNorm, linear head
    over the image vocabulary. Sampling decodes one token at a time with a KV cache (``generate_tokens(...,
    use_cache=False)`` recomputes the whole prefix at each step instead; both give the same tokens).

    With the defaults on 28×28 images (16 levels, 14×14 tokens) the model has 0.82 M parameters.

    Args:
        image_shape, n_layer, n_head, n_embd, dropout, tokenizer, levels, token_size, tokenizer_weights,
        temperature, top_k, lr, weight_decay, warmup_steps, cosine_decay: The fields of
        :class:`~models.transformer.config.TransformerConfig` (meaning and defaults).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
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
        super().__init__(TransformerConfig.pick(locals()))
        self.save_hyperparameters()
        self.build_network()

    def build_network(self) -> None:
        """Embeddings, blocks, final LayerNorm and head of ``self.config``, GPT-initialized."""
        cfg = self.config
        prefix_vocab, self.prefix_len = self.prefix_spec()
        self.image_offset = prefix_vocab  # input id of image token k is prefix_vocab + k
        self.tok_emb = nn.Embedding(prefix_vocab + self.vocab + 1, cfg.n_embd)  # + BOS
        self.pos_emb = nn.Embedding(self.prefix_len + self.seq_len, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, cfg.dropout, causal=True) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, self.vocab, bias=False)
        init_gpt_weights(self, cfg.n_layer)

    def prefix_spec(self) -> tuple[int, int]:
        """(prefix vocabulary size, prefix length) of a conditioning prefix before BOS; none for plain GPT."""
        return 0, 0

    @property
    def bos(self) -> int:
        return self.image_offset + self.vocab

    # ------------------------------------------------------------------------------------------------ forward
    def hidden(self, idx: torch.Tensor, past: list[KVCache] | None = None) -> tuple[torch.Tensor, list[KVCache]]:
        """Final-LayerNorm hidden states of new input ids, continuing after the cached ones.

        Args:
            idx: (B, T) input ids (prefix ids, BOS, ``image_offset`` + image tokens) at positions
                T_past … T_past + T − 1.
            past: Per-layer KV caches of the first T_past positions, or None.

        Returns:
            (B, T, C) hidden states and the per-layer caches of all T_past + T positions.
        """
        t_past = past[0][0].shape[2] if past else 0
        pos = torch.arange(t_past, t_past + idx.shape[1], device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        presents = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past=past[i] if past else None)
            presents.append(kv)
        return self.ln_f(x), presents

    def forward(self, idx: torch.Tensor, past: list[KVCache] | None = None) -> tuple[torch.Tensor, list[KVCache]]:
        """(B, T) input ids → (B, T, vocab) next-image-token logits and the KV caches (see :meth:`hidden`)."""
        h, presents = self.hidden(idx, past)
        return self.head(h), presents

    def build_inputs(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """``[prefix, BOS, tokens[:-1]]`` as input ids: (B, N) image tokens → (B, L + N)."""
        b = len(tokens)
        bos = torch.full((b, 1), self.bos, dtype=torch.long, device=tokens.device)
        parts = [bos, tokens[:, :-1] + self.image_offset]
        if self.prefix_len:
            if prefix is None:
                raise ValueError(f"{self.registry_name} needs a (B, {self.prefix_len}) prefix")
            parts.insert(0, prefix.to(tokens.device))
        return torch.cat(parts, dim=1)

    def image_logits(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        logits, _ = self(self.build_inputs(tokens, prefix))  # (B, L + N, V)
        return logits[:, self.prefix_len:]

    # ------------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate_tokens(
        self,
        n: int,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        return_logits: bool = False,
        prefix: torch.Tensor | None = None,
        null_prefix: torch.Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draws (n, N) image tokens, optionally after a prefix and with classifier-free guidance.

        Args:
            n: Number of sequences (must equal ``len(prefix)`` when a prefix is given).
            generator: CPU generator of the sampling noise (None: global RNG).
            use_cache: Decode incrementally with the KV cache; False recomputes the whole sequence each step.
            return_logits: Also return the (n, N, vocab) logits (after guidance, before temperature/top-k).
            prefix: (n, L) conditioning input ids (models with a prefix only).
            null_prefix: (n, L) unconditional prefix; with ``guidance_scale != 1`` the logits are
                ``uncond + guidance_scale · (cond − uncond)``, cond and uncond computed in one batched forward.
            guidance_scale: Classifier-free guidance scale (1: plain conditional sampling, no second pass).
        """
        device = self.device
        guided = null_prefix is not None and guidance_scale != 1.0
        ctx = torch.zeros(n, 0, dtype=torch.long, device=device)
        if self.prefix_len:
            if prefix is None or len(prefix) != n:
                raise ValueError(f"{self.registry_name} needs a ({n}, {self.prefix_len}) prefix to sample")
            ctx = prefix.to(device)
            if guided:
                ctx = torch.cat([ctx, null_prefix.to(device)])  # (2n, L): cond rows, then uncond rows
        seq = torch.cat([ctx, torch.full((len(ctx), 1), self.bos, dtype=torch.long, device=device)], dim=1)
        tokens, all_logits = [], []
        past: list[KVCache] | None = None
        for _ in range(self.seq_len):
            if use_cache:
                logits, past = self(seq if past is None else seq[:, -1:], past=past)
            else:
                logits, _ = self(seq)
            logits = logits[:, -1].float()  # (n or 2n, V)
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + guidance_scale * (cond - uncond)
            tok = self.pick_tokens(logits, generator)  # (n,)
            tokens.append(tok)
            all_logits.append(logits)
            nxt = (tok + self.image_offset).unsqueeze(1)
            seq = torch.cat([seq, nxt.repeat(2, 1) if guided else nxt], dim=1)
        out = torch.stack(tokens, dim=1)  # (n, N)
        return (out, torch.stack(all_logits, dim=1)) if return_logits else out
