"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu, 2017) with a Bernoulli decoder and a fitted per-position prior.

The encoder maps an image to an (h, w) = (H/4, W/4) grid of D-dim vectors; each is replaced by its nearest of K
codebook vectors (straight-through gradient to the encoder). ``encode_indices`` / ``decode_indices`` expose the
code grid, so the model doubles as an image tokenizer for an autoregressive prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoEncoder
from models.registry import MODELS
from models.vae.likelihood import bernoulli_log_likelihood


def code_usage_stats(indices: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity ``exp(H(p))`` of the empirical code distribution p of ``indices`` and the fraction of the
    ``num_codes`` codes that occur at least once. Perplexity is K when all K codes are used equally, 1 when one
    code takes everything."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes).float()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()  # 0·log 0 = 0
    return entropy.exp(), (counts > 0).float().mean()


class ResBlock(nn.Module):
    """x + Conv1×1(ReLU(Conv3×3(ReLU(x)))), as in the VQ-VAE paper."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VectorQuantizer(nn.Module):
    """K codebook vectors of dim D: nearest-neighbour assignment, EMA or gradient codebook updates, dead-code
    re-initialization.

    Args:
        num_codes: K. dim: D.
        ema_decay: > 0: the codebook is a buffer updated as an exponential moving average of the encoder outputs
            assigned to each code (van den Oord et al., App. A.1; Laplace-smoothed counts); 0: it is a parameter
            trained by the codebook loss ‖sg(z_e) − e‖².
        dead_code_steps: A code not assigned in this many consecutive training batches is re-initialized to a
            random encoder output of the current batch (0 disables). Codes start "dead", so the first training
            batch initializes every code it does not use from its own encoder outputs.
    """

    def __init__(self, num_codes: int, dim: int, ema_decay: float = 0.99, dead_code_steps: int = 50) -> None:
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.ema_decay, self.dead_code_steps = ema_decay, dead_code_steps
        if ema_decay > 0:
            self.register_buffer("codebook", torch.randn(num_codes, dim))
            self.register_buffer("ema_count", torch.ones(num_codes))
            self.register_buffer("ema_sum", self.codebook.clone())
        else:
            self.codebook = nn.Parameter(torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes))
        self.register_buffer("steps_unused", torch.full((num_codes,), max(dead_code_steps, 0), dtype=torch.long))

    @staticmethod
    def flatten(z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B·h·w, D)
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])

    @torch.no_grad()
    def indices(self, z_e: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, h, w) long
        """Index of the nearest codebook vector (Euclidean) at each position."""
        b, _, h, w = z_e.shape
        flat = self.flatten(z_e)
        e = self.codebook
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)
        return d2.argmin(1).view(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, D, h, w)
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)

    @torch.no_grad()
    def update(self, z_e: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """One training batch's codebook bookkeeping: EMA update (if enabled), then dead-code re-initialization.

        Args:
            z_e: (B, D, h, w) encoder outputs. indices: (B, h, w) their code indices.

        Returns:
            The indices of the codes re-initialized (long, possibly empty).
        """
        flat, idx = self.flatten(z_e.detach()).to(self.codebook.dtype), indices.flatten()
        counts = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat) if self.ema_decay > 0 else None
        distributed = _world_size() > 1
        if distributed:  # DDP: the statistics of the global batch, so every rank keeps the same codebook
            torch.distributed.all_reduce(counts)
            if sums is not None:
                torch.distributed.all_reduce(sums)
        if self.ema_decay > 0:
            self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
            self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
            n, eps = self.ema_count.sum(), 1e-5
            smoothed = (self.ema_count + eps) / (n + self.num_codes * eps) * n
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        if self.dead_code_steps <= 0:
            return torch.zeros(0, dtype=torch.long, device=flat.device)
        used = counts > 0
        self.steps_unused.add_(1).masked_fill_(used, 0)
        dead = (self.steps_unused >= self.dead_code_steps).nonzero().flatten()
        if len(dead) == 0:
            return dead
        if len(flat) >= len(dead):
            pick = torch.randperm(len(flat), device=flat.device)[: len(dead)]
        else:
            pick = torch.randint(len(flat), (len(dead),), device=flat.device)
        new = flat[pick]
        if distributed:  # every rank found the same dead codes (global counts); rank 0's replacements win
            torch.distributed.broadcast(new, src=0)
        self.codebook.data[dead] = new
        if self.ema_decay > 0:
            self.ema_sum[dead] = new
            self.ema_count[dead] = 1.0
        self.steps_unused[dead] = 0
        return dead


def _world_size() -> int:
    """Processes in the default process group (1 when torch.distributed is not initialized)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@MODELS.register("vq-vae")
class VQVAE(AutoEncoder):
    """VQ-VAE with a Bernoulli decoder, straight-through estimator, commitment loss and a fitted prior.

    Loss per image (nats): BCE summed over pixels + β·‖z_e − sg(e)‖² (+ ‖sg(z_e) − e‖² when the codebook is
    trained by gradient, ``ema_decay=0``), squared errors summed over the (D, h, w) code grid. Logged each training
    step: ``train_perplexity`` (exp of the entropy of the batch's code frequencies), ``train_code_usage`` (fraction
    of the K codes used in the batch) and ``train_codes_reset`` (dead codes re-initialized).

    Prior (no learned autoregressive prior here): independent per-position categoricals, p(code k at (i, j)) ∝
    c_ijk + 1, where c are code counts over training batches decayed by ``prior_decay`` per step (an effective
    window of ~1/(1 − prior_decay) recent steps, so the counts follow the changing encoder), kept in the
    ``prior_counts`` buffer (saved and loaded with the weights). Untrained, it is uniform. ``sample`` draws every
    position independently from it; re-initialized codes have their counts zeroed.

    ELBO: the posterior is a deterministic one-hot q(z|x), so KL(q || p) = −log p(z) under the fitted prior, and
    ``elbo(x) = log p(x | z_q) + Σ_positions log p_prior(code)`` — the bound of the model that ``sample`` draws from
    (with the uniform untrained prior this is the paper's ``log p(x|z_q) − h·w·log K``). An importance-weighted
    bound with a deterministic proposal has identical weights, so ``nll(x, K) = −elbo(x)`` for every K.

    Args:
        image_shape: (C, H, W), H and W divisible by 4 (code grid H/4 × W/4).
        num_codes: K, codebook size.
        latent_dim: D, dimension of each code vector.
        width: Channels of the first conv (2·width at the code-grid resolution).
        commitment: β of the commitment loss (0.25 in the paper).
        ema_decay: EMA decay of the codebook updates; 0 trains the codebook by the codebook loss instead.
        dead_code_steps: Re-initialize a code unused for this many training batches (0: never).
        prior_decay: Per-step decay of the prior's code counts.
        lr: Adam learning rate.
    """

    family = "vae"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        num_codes: int = 128,
        latent_dim: int = 16,
        width: int = 32,
        commitment: float = 0.25,
        ema_decay: float = 0.99,
        dead_code_steps: int = 50,
        prior_decay: float = 0.99,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_shape = tuple(image_shape)
        channels, height, wide = self.image_shape
        if height % 4 or wide % 4:
            raise ValueError(f"vq-vae needs H and W divisible by 4, got {height}×{wide}")
        self.latent_shape = (height // 4, wide // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            ResBlock(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, latent_dim, 1),
        )
        self.quantizer = VectorQuantizer(num_codes, latent_dim, ema_decay, dead_code_steps)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_dim, 2 * width, 3, 1, 1),
            ResBlock(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
        )
        self.register_buffer("prior_counts", torch.zeros(*self.latent_shape, num_codes))

    # ------------------------------------------------------------------------------------------------ tokenizer
    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, h, w) long
        """Code index of each latent position."""
        return self.quantizer.indices(self.encoder(x))

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:  # (B, h, w) long -> (B, C, H, W) in [0, 1]
        """Decoder mean (Bernoulli probabilities) of a code grid."""
        return torch.sigmoid(self.decoder(self.quantizer.lookup(indices.to(self.device))))

    # ---------------------------------------------------------------------------------------------------- prior
    def prior_log_probs(self) -> torch.Tensor:
        """(h, w, K) log-probabilities of the fitted per-position prior (add-one smoothed counts)."""
        counts = self.prior_counts + 1.0
        return torch.log(counts / counts.sum(-1, keepdim=True))

    # ------------------------------------------------------------------------------------------------- training
    def _forward_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z_e = self.encoder(x)  # (B, D, h, w)
        idx = self.quantizer.indices(z_e)  # (B, h, w)
        z_q = self.quantizer.lookup(idx)
        z_st = z_e + (z_q - z_e).detach()  # straight-through: decoder sees z_q, the gradient flows to z_e
        rec = -bernoulli_log_likelihood(self.decoder(z_st), x)
        commit = (z_e - z_q.detach()).pow(2).flatten(1).sum(1)
        terms = {"z_e": z_e, "idx": idx, "rec": rec, "commitment": commit}
        if self.hparams.ema_decay <= 0:
            terms["codebook"] = (z_e.detach() - z_q).pow(2).flatten(1).sum(1)
        return terms

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        t = self._forward_terms(batch["image"])
        per_image = t["rec"] + self.hparams.commitment * t["commitment"] + t.get("codebook", 0.0)
        loss = per_image.mean()
        perplexity, usage = code_usage_stats(t["idx"], self.hparams.num_codes)
        logs = {"loss": loss, "rec": t["rec"].mean(), "commitment": t["commitment"].mean(),
                "perplexity": perplexity, "code_usage": usage}
        if stage == "train":
            logs["codes_reset"] = torch.tensor(float(self._update_after_batch(t["z_e"], t["idx"])))
        self.log_dict({f"{stage}_{k}": v for k, v in logs.items()}, prog_bar=stage == "train",
                      sync_dist=stage != "train")
        return loss

    @torch.no_grad()
    def _update_after_batch(self, z_e: torch.Tensor, idx: torch.Tensor) -> int:
        """Codebook EMA / dead codes, then the prior's counts. Returns the number of codes re-initialized."""
        reset = self.quantizer.update(z_e, idx)
        one_hot = F.one_hot(idx, self.hparams.num_codes).to(self.prior_counts.dtype).sum(0)  # (h, w, K)
        self.prior_counts.mul_(self.hparams.prior_decay).add_(one_hot)
        self.prior_counts[..., reset] = 0.0  # a re-initialized code means something new
        return len(reset)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # ----------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,) nats
        idx = self.encode_indices(x)
        log_px = bernoulli_log_likelihood(self.decoder(self.quantizer.lookup(idx)), x)
        log_prior = self.prior_log_probs().unsqueeze(0).expand(len(idx), -1, -1, -1)
        log_pz = log_prior.gather(-1, idx.unsqueeze(-1)).flatten(1).sum(1)
        return log_px + log_pz

    @torch.no_grad()
    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """−elbo(x): with a deterministic posterior every importance weight is the same (K and generator unused)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        return -self.elbo(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_indices(self.encode_indices(x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes drawn independently per position from the fitted prior (on the CPU, from ``generator``), decoded."""
        h, w = self.latent_shape
        probs = self.prior_log_probs().exp().reshape(h * w, -1).cpu().double()
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (h·w, n)
        return self.decode_indices(idx.T.reshape(n, h, w))

