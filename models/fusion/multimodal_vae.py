"""Multimodal VAEs over image + caption: the generative head of the fusion suite (early, mid and late fusion).

Every model has one Gaussian latent ``z`` with an N(0, I) prior and two decoders, so its ELBO covers both modalities:

* an image decoder ``p(x | z)``: :class:`~models.conv_nets.ConvDecoder` logits under independent Bernoulli pixels
  (the [0, 1] surrogate of :class:`~models.vae.vae.GaussianVAE`);
* a text decoder ``p(w | z)``: :class:`TextDecoder`, an independent categorical over the vocabulary at each of the
  L caption positions (padding id 0 included: the decoder also models the caption's length).

The three registered models differ only in the encoder, i.e. in where the modalities are fused. All of them use the
tokenizers and Transformer of the fusion classifiers (:mod:`models.fusion.components`):

* ``mvae-early``: image patches and caption words in one token sequence (``early-concat``), one shared encoder →
  q(z | x, w);
* ``mvae-mid``: one Transformer per modality → features → a registered mid-fusion operator (``fusion``) → q(z | x, w);
  optional contrastive modality alignment (``align_weight``) between the pooled unimodal embeddings;
* ``mvae-late``: one Gaussian expert per modality, q̃(z | x) and q̃(z | w), multiplied with the prior expert (product of
  experts, :func:`~models.fusion.poe.product_of_experts`), trained with MVAE's sub-sampled ELBO (Wu & Goodman, 2018).

The mixture-posterior VAEs ``mopoe`` (MoPoE) and ``mmvae`` (MMVAE) of :mod:`models.fusion.mixture_vae` build on the
same base and on ``mvae-late``'s unimodal experts (:class:`UnimodalExpertsMVAE`); all five share one constructor
config, :class:`MultimodalVAEConfig`.

Missing modalities. Late fusion drops an absent expert from the product. Early and mid fusion train with
**modality dropout**: per training sample, with probability ``p_drop`` the image is missing (text only), with
probability ``p_drop`` the caption is missing (image only), otherwise both are seen (so ``p_drop <= 0.5``). A missing
modality's input is replaced by a learned "missing" tensor that is the same for every sample: the image's patch
tokens (early) or the image encoder's output (mid), and likewise for the caption. Both decoders always reconstruct
both modalities, so every training loss is the negative of a valid ELBO of ``log p(x, w)`` whose proposal is the
posterior given the kept modalities. The same missing inputs give q(z | x) (``reconstruct``, ``elbo``, ``nll``) and
q(z | w) (``sample_from_text``) at evaluation time.

Logged (nats per sample): ``train_loss`` (the training objective), ``val_loss`` (the negative joint ELBO
``-ELBO(x, w)`` with both modalities and text weight 1: the same quantity for the three models), the ELBO parts
``{stage}_rec_image``, ``{stage}_rec_text``, ``{stage}_kl`` and ``val_nelbo_image`` (``-elbo(x)``, image alone).

Defaults are small and CPU-friendly (d_model 32, one Transformer layer, 4×4 patches, latent 16) and work on 8×8
``captioned-digits`` and 28×28 ``captioned-fashion-mnist``; the text log-likelihood is weighted by
``text_weight = 10`` in training (see :class:`MultimodalVAE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.base import AutoEncoder, TextToImageGenerator
from models.conv_nets import ConvDecoder
from models.fusion.alignment import ContrastiveAlignment
from models.fusion.components import ImageTokens, TextTokens, TokenEncoder
from models.fusion.operators import FUSIONS, FusionOperator, fusion_names
from models.fusion.poe import product_of_experts
from models.registry import MODELS
from models.vae.likelihood import bernoulli_log_likelihood, gaussian_iwae_nll

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class MultimodalVAEConfig:
    """The constructor arguments every multimodal VAE shares (``mvae-*``, ``mopoe``, ``mmvae``), with their defaults.

    The registered models keep these as explicit keyword arguments (``from_data`` reads their signatures, and
    ``save_hyperparameters`` records them, so checkpoints stay loadable); their defaults come from
    :data:`DEFAULTS`, and each model passes ``MultimodalVAEConfig.pick(locals())`` to :class:`MultimodalVAE`.
    See :class:`MultimodalVAE` for the meaning of each field.

    Raises:
        ValueError: If there is no caption vocabulary / length, or ``text_weight < 0``.
    """

    image_shape: tuple[int, int, int] = (1, 8, 8)
    vocab_size: int = 32
    text_length: int = 10
    latent_dim: int = 16
    width: int = 32
    d_model: int = 32
    n_layers: int = 1
    n_heads: int = 4
    patch_size: int = 4
    text_weight: float = 10.0
    dropout: float = 0.0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))  # a list from a YAML / JSON file
        if self.vocab_size < 2 or self.text_length < 1:
            raise ValueError(f"need a caption vocabulary and length, got vocab_size={self.vocab_size}, "
                             f"text_length={self.text_length} (use an image+text datamodule, e.g. captioned-digits)")
        if self.text_weight < 0:
            raise ValueError(f"text_weight must be >= 0, got {self.text_weight}")

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> MultimodalVAEConfig:
        """The config of the fields named in ``values`` (e.g. a constructor's ``locals()``); other keys are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


#: The shared defaults: the registered models' signatures read them (``latent_dim: int = DEFAULTS.latent_dim``).
DEFAULTS = MultimodalVAEConfig()


class TextDecoder(nn.Module):
    """Maps a latent vector to per-position categorical logits over the vocabulary: (B, Z) -> (B, L, V).

    Args:
        latent_dim: Size Z of z. text_length: Caption length L. vocab_size: Vocabulary size V.
        hidden: Width of the two hidden layers.
    """

    def __init__(self, latent_dim: int, text_length: int, vocab_size: int, hidden: int) -> None:
        super().__init__()
        self.text_length, self.vocab_size = text_length, vocab_size
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, text_length * vocab_size),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z) -> (B, L, V)
        return self.net(z).view(-1, self.text_length, self.vocab_size)


def categorical_log_likelihood(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(w | logits) of token ids under independent per-position categoricals, (B, L, V), (B, L) -> (B,) nats."""
    return -F.cross_entropy(logits.transpose(1, 2), ids, reduction="none").sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), (B, Z) -> (B,) nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def _select(present: torch.Tensor, value: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """Per sample, ``value`` where ``present`` (B,) is True, else the (broadcast) ``missing`` tensor."""
    return torch.where(present.view(-1, *[1] * (value.dim() - 1)), value, missing)


class MultimodalVAE(AutoEncoder, TextToImageGenerator):
    """Unregistered base: Gaussian latent, Bernoulli image decoder, categorical text decoder, shared evaluation API.

    Subclasses build their encoder, implement :meth:`encode` and :meth:`training_objective`, set
    :attr:`fusion_stage` and :attr:`fusion_operator`, and call ``save_hyperparameters()`` in their ``__init__``.

    Args:
        config: The shared constructor arguments (:class:`MultimodalVAEConfig`); its fields:
            image_shape: (C, H, W) of ``batch["image"]``; H == W, a side the conv decoder supports (8, 16, 28, 32, ...).
            vocab_size: Vocabulary size of ``batch["text"]``. text_length: Caption length L.
            latent_dim: Size of z. width: Channel width of the image decoder.
            d_model: Token width of the encoders (and hidden width / 2 of the text decoder).
            n_layers: Transformer layers per encoder. n_heads: Attention heads.
            patch_size: Side of the image patches (must divide H).
            text_weight: Weight λ of the text log-likelihood in the training loss (1 is the plain ELBO; the logged
                ``val_loss`` always uses 1). The registered models default to 10: like MVAE's up-weighting of the
                low-dimensional modality, it makes z carry the caption. With λ = 1 a 10-token caption (about 5 nats)
                barely matters next to 64 pixels, and text→image generations were hardly more coherent than chance.
                Measured on the captioned-digits test split after 600 steps: a logistic regression that reads the
                caption's parity × magnitude group from a real image (0.75 on real images; chance 0.25) scored
                0.27–0.33 on text→image generations with λ = 1, and 0.55 (early), 0.52 (mid), 0.37 (late) with
                λ = 10.
            dropout: Dropout inside the Transformers. lr: Adam learning rate.
    """

    family = "fusion"
    #: Images per decoder call when ``nll`` decodes B·K posterior samples (bounds memory, not the result).
    nll_chunk_size: int = 4096
    #: The modalities, in the order fusion operators receive them.
    modalities: ClassVar[tuple[str, ...]] = MODALITIES

    def __init__(self, config: MultimodalVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.image_shape = config.image_shape
        self.latent_dim = config.latent_dim
        self.text_weight = config.text_weight
        self.lr = config.lr
        d_model = config.d_model
        self.tokenizers = nn.ModuleDict({
            "image": ImageTokens(self.image_shape, config.patch_size, d_model),
            "text": TextTokens(config.vocab_size, config.text_length, d_model),
        })
        self.num_patches = (self.image_shape[1] // config.patch_size) * (self.image_shape[2] // config.patch_size)
        self.text_length = config.text_length
        self.d_model, self.n_layers, self.n_heads = d_model, config.n_layers, config.n_heads
        self.dropout = config.dropout
        self.image_decoder = ConvDecoder(config.latent_dim, self.image_shape, config.width, out_activation=None)
        self.text_decoder = TextDecoder(config.latent_dim, config.text_length, config.vocab_size, hidden=2 * d_model)

    # ---------------------------------------------------------------------------------------------- building
    def make_encoder(self) -> TokenEncoder:
        """A fresh Transformer encoder ([CLS] + pre-norm layers) with this model's configuration."""
        return TokenEncoder(self.d_model, self.n_layers, self.n_heads, self.dropout)

    def missing_parameter(self, *shape: int) -> nn.Parameter:
        """A learned "missing modality" input of ``shape``, initialized like the tokenizers' positions."""
        return nn.Parameter(torch.randn(*shape) * 0.02)

    def posterior_head(self) -> nn.Linear:
        """A linear map from a (B, d_model) embedding to the (B, 2Z) mean and log-variance of a Gaussian."""
        return nn.Linear(self.d_model, 2 * self.latent_dim)

    @staticmethod
    def gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, 2Z) -> 2 × (B, Z)
        """Splits (B, 2Z) into mean and log-variance (clamped to [-30, 20] as in GaussianVAE)."""
        mu, logvar = params.chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    # --------------------------------------------------------------------------------------------- inference
    def encode(
        self,
        image: torch.Tensor | None,
        text: torch.Tensor | None,
        image_present: torch.Tensor | None = None,
        text_present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | the present modalities): mean and log-variance, each (B, Z).

        Args:
            image: (B, C, H, W) in [0, 1], or None when no sample has an image.
            text: (B, L) token ids, or None when no sample has a caption.
            image_present: (B,) bool, False where a sample's image is treated as missing (None: all present).
            text_present: (B,) bool, likewise for the caption.
        """
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | every modality ``batch`` holds): mean and log-variance, each (B, Z)."""
        return self.encode(batch.get("image"), batch.get("text"))

    @staticmethod
    def _batch_size(image: torch.Tensor | None, text: torch.Tensor | None) -> int:
        if image is None and text is None:
            raise ValueError("encode needs at least one modality (image or text)")
        return len(image) if image is not None else len(text)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:  # 2 × (B, Z) -> (B, Z)
        """z = mu + σ·ε with ε ~ N(0, I) drawn from ``generator`` (on the CPU, then moved) or the global RNG."""
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn(mu.shape, generator=generator).to(device=mu.device, dtype=mu.dtype)
        return mu + eps * (0.5 * logvar).exp()

    def reconstruction_terms(
        self, z: torch.Tensor, image: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Negative log-likelihoods -log p(x | z) and -log p(w | z), each (B,) nats (None for a modality not given)."""
        rec_image = -bernoulli_log_likelihood(self.image_decoder(z), image) if image is not None else None
        rec_text = -categorical_log_likelihood(self.text_decoder(z), text) if text is not None else None
        return rec_image, rec_text

    # ---------------------------------------------------------------------------------------------- training
    def modality_dropout(self, b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (image_present, text_present), (B,) bool each: text only w.p. ``p_drop``, image only w.p.
        ``p_drop``, both otherwise (never neither). Drawn from the global RNG."""
        p = float(self.hparams.p_drop)
        u = torch.rand(b, device=device)
        return u >= p, (u < p) | (u >= 2 * p)

    def joint_terms(
        self, batch: dict[str, torch.Tensor], image_present: torch.Tensor | None = None,
        text_present: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """ELBO parts of ``log p(x, w)`` with proposal q(z | the present modalities): rec_image, rec_text, kl (B,)."""
        image, text = batch["image"], batch["text"]
        mu, logvar = self.encode(image, text, image_present, text_present)
        rec_image, rec_text = self.reconstruction_terms(self.reparameterize(mu, logvar), image, text)
        return {"rec_image": rec_image, "rec_text": rec_text, "kl": gaussian_kl(mu, logvar)}

    def training_objective(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar training loss (nats per sample) and the values to log (without the stage prefix).

        Default (early and mid fusion): the negative ELBO of (x, w) under modality dropout, with the text
        log-likelihood weighted by ``text_weight``.
        """
        image = batch["image"]
        image_present, text_present = self.modality_dropout(len(image), image.device)
        t = self.joint_terms(batch, image_present, text_present)
        loss = (t["rec_image"] + self.text_weight * t["rec_text"] + t["kl"]).mean()
        return loss, {k: v.mean() for k, v in t.items()}

    def validation_objective(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-ELBO(x, w) with both modalities (text weight 1), its parts, and -ELBO(x) of the image alone."""
        t = self.joint_terms(batch)
        loss = (t["rec_image"] + t["rec_text"] + t["kl"]).mean()
        logs = {k: v.mean() for k, v in t.items()}
        logs["nelbo_image"] = -self._elbo(batch["image"]).mean()
        return loss, logs

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        objective = self.training_objective if stage == "train" else self.validation_objective
        loss, logs = objective(batch)
        self.log_dict(
            {f"{stage}_{k}": v for k, v in {"loss": loss, **logs}.items()},
            prog_bar=stage == "train",
            batch_size=len(batch["image"]),
            sync_dist=stage != "train",
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    # -------------------------------------------------------------------------------------------- evaluation
    def required_modalities(self) -> tuple[str, ...]:
        return MODALITIES

    def _elbo(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,) nats
        mu, logvar = self.encode(x, None)
        rec_image, _ = self.reconstruction_terms(self.reparameterize(mu, logvar), image=x)
        return -(rec_image + gaussian_kl(mu, logvar))

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,) nats
        """ELBO of the image alone, log p(x) >= E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)): one posterior sample
        from the global RNG, analytic KL; q(z | x) is the posterior given the image only."""
        return self._elbo(x)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """IWAE bound on -log p(x) of the image alone with K = ``num_samples`` draws from q(z | x), (B,) nats.

        As :meth:`models.vae.vae.GaussianVAE.nll`: the (K, B, Z) noise comes from ``generator`` in one draw and the
        decoder sees the B·K samples in chunks of at most ``nll_chunk_size`` images.
        """
        mu, logvar = self.encode(x, None)  # (B, Z) each
        return gaussian_iwae_nll(x, mu, logvar, self.image_decoder, num_samples, generator, self.nll_chunk_size)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean image decoded from the mean of q(z | x), the image alone."""
        mu, _ = self.encode(x, None)
        return torch.sigmoid(self.image_decoder(mu))

    @torch.no_grad()
    def reconstruct_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean image decoded from the mean of q(z | x, w), image and caption."""
        mu, _ = self.encode(batch["image"], batch["text"])
        return torch.sigmoid(self.image_decoder(mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images decoded from ``n`` prior draws z ~ N(0, I)."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.image_decoder(z))

    @torch.no_grad()
    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unconditional samples of both modalities from ``n`` prior draws z ~ N(0, I) (the prior of every
        multimodal VAE here, the mixture-posterior ones included): each z decoded to its mean image and to the most
        likely token per caption position (as :meth:`generate_text`), for ``joint-coherence``.

        The z are drawn exactly as :meth:`sample` draws them, so the images equal ``sample(n, generator)``'s for a
        generator in the same state; deterministic given the generator (None: the global RNG).

        Returns:
            ``(images (n, C, H, W) in [0, 1], text (n, L) long ids)`` on the model's device.
        """
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)  # (n, Z)
        return torch.sigmoid(self.image_decoder(z)), self.text_decoder(z).argmax(-1)  # (n, C, H, W), (n, L)

    @torch.no_grad()
    def sample_from_text(self, text: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-modal generation: for each caption one z ~ q(z | w) (a posterior *sample*, not its mean, so one
        caption gives varied images), decoded to its mean image; no image is read. (B, L) -> (B, C, H, W)."""
        mu, logvar = self.encode(None, text)
        return torch.sigmoid(self.image_decoder(self.reparameterize(mu, logvar, generator)))

    @torch.no_grad()
    def generate_text(self, image: torch.Tensor) -> torch.Tensor:
        """Cross-modal generation the other way: the most likely token per position given the mean of q(z | x),
        (B, C, H, W) -> (B, L) long ids."""
        mu, _ = self.encode(image, None)
        return self.text_decoder(mu).argmax(-1)


# ================================================================================================ early fusion
@MODELS.register("mvae-early")
class EarlyFusionMVAE(MultimodalVAE):
    """Multimodal VAE with early fusion: image patch tokens and caption tokens concatenated by the ``early-concat``
    operator, read by one shared Transformer whose [CLS] output gives q(z | x, w).

    A missing modality's tokens are replaced by learned missing tokens ((P, d) for the image, (L, d) for the caption)
    before the operator; training uses modality dropout (module docstring).

    Args:
        p_drop: Probability, per training sample, that the image is missing, and (separately) that the caption is
            missing; both are never missing together, so ``0 <= p_drop <= 0.5``.
        Others: as :class:`MultimodalVAE`.
    """

    fusion_stage = "early"
    fusion_operator = "early-concat"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        vocab_size: int = DEFAULTS.vocab_size,
        text_length: int = DEFAULTS.text_length,
        latent_dim: int = DEFAULTS.latent_dim,
        width: int = DEFAULTS.width,
        d_model: int = DEFAULTS.d_model,
        n_layers: int = DEFAULTS.n_layers,
        n_heads: int = DEFAULTS.n_heads,
        patch_size: int = DEFAULTS.patch_size,
        p_drop: float = 0.3,
        text_weight: float = DEFAULTS.text_weight,
        dropout: float = DEFAULTS.dropout,
        lr: float = DEFAULTS.lr,
    ) -> None:
        _check_p_drop(p_drop)
        super().__init__(MultimodalVAEConfig.pick(locals()))
        self.save_hyperparameters()
        self.fusion_stage, self.fusion_operator = "early", "early-concat"
        self.fusion: FusionOperator = FUSIONS.get("early-concat")([d_model, d_model], d_model)
        self.encoder = self.make_encoder()
        self.posterior = self.posterior_head()
        self.missing_image = self.missing_parameter(1, self.num_patches, d_model)  # (1, P, d)
        self.missing_text = self.missing_parameter(1, text_length, d_model)  # (1, L, d)

    def encode(self, image, text, image_present=None, text_present=None):  # noqa: D102 (see MultimodalVAE.encode)
        b = self._batch_size(image, text)
        tokens = []
        for name, x, present, missing in (("image", image, image_present, self.missing_image),
                                          ("text", text, text_present, self.missing_text)):
            if x is None:
                tokens.append(missing.expand(b, -1, -1))  # (B, T_m, d)
                continue
            t = self.tokenizers[name](x)  # (B, T_m, d)
            tokens.append(t if present is None else _select(present, t, missing))
        return self.gaussian(self.posterior(self.encoder(self.fusion(tokens))))  # (B, P + L, d) -> (B, d) -> 2×(B, Z)


# ================================================================================================== mid fusion
@MODELS.register("mvae-mid")
class MidFusionMVAE(MultimodalVAE):
    """Multimodal VAE with mid (feature-level) fusion: one Transformer per modality, their features fused by a
    registered mid-fusion operator, a linear map to q(z | x, w).

    Pooled operators read the [CLS] embeddings (B, d); token operators (``mid-cross-attention``) read every output
    token (B, 1 + T_m, d). A missing modality's encoder output is replaced by a learned missing feature of the same
    shape; training uses modality dropout (module docstring).

    Args:
        fusion: A registered operator of stage "mid" (``bench list fusions``); default ``mid-concat``.
        align_weight: Weight of the contrastive modality-alignment loss (:class:`ContrastiveAlignment`) between the
            pooled unimodal embeddings of the real (never dropped) inputs; 0 disables it.
        align_temperature: Temperature of that loss.
        p_drop: As for ``mvae-early``. Others: as :class:`MultimodalVAE`.

    Raises:
        ValueError: If ``fusion`` is not a mid-fusion operator (the message lists the accepted ones), or
            ``align_weight < 0``.
    """

    fusion_stage = "mid"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        vocab_size: int = DEFAULTS.vocab_size,
        text_length: int = DEFAULTS.text_length,
        fusion: str = "mid-concat",
        latent_dim: int = DEFAULTS.latent_dim,
        width: int = DEFAULTS.width,
        d_model: int = DEFAULTS.d_model,
        n_layers: int = DEFAULTS.n_layers,
        n_heads: int = DEFAULTS.n_heads,
        patch_size: int = DEFAULTS.patch_size,
        p_drop: float = 0.3,
        text_weight: float = DEFAULTS.text_weight,
        align_weight: float = 0.0,
        align_temperature: float = 0.1,
        dropout: float = DEFAULTS.dropout,
        lr: float = DEFAULTS.lr,
    ) -> None:
        accepted = fusion_names(stage="mid")
        if fusion not in accepted:
            raise ValueError(f"mvae-mid: fusion must be a mid-fusion operator, one of {', '.join(accepted)}; "
                             f"got {fusion!r}")
        if align_weight < 0:
            raise ValueError(f"align_weight must be >= 0, got {align_weight}")
        _check_p_drop(p_drop)
        super().__init__(MultimodalVAEConfig.pick(locals()))
        self.save_hyperparameters()
        self.fusion_stage, self.fusion_operator = "mid", fusion
        op = FUSIONS.get(fusion)
        self.input_kind = op.input_kind
        self.encoders = nn.ModuleDict({name: self.make_encoder() for name in self.modalities})
        self.fusion: FusionOperator = op([d_model, d_model], d_model)
        self.posterior = self.posterior_head()
        tokens = self.input_kind == "tokens"  # missing features: (1, 1 + T_m, d) token sequences or (1, d) vectors
        self.missing_image = self.missing_parameter(1, 1 + self.num_patches, d_model) if tokens \
            else self.missing_parameter(1, d_model)
        self.missing_text = self.missing_parameter(1, 1 + text_length, d_model) if tokens \
            else self.missing_parameter(1, d_model)
        self.alignment = (ContrastiveAlignment([d_model, d_model], proj_dim=d_model, temperature=align_temperature)
                          if align_weight > 0 else None)

    def features(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One modality's encoder output: (B, 1 + T_m, d) tokens for token operators, else the (B, d) [CLS]."""
        tokens = self.tokenizers[name](x)  # (B, T_m, d)
        if self.input_kind == "tokens":
            return self.encoders[name].forward_tokens(tokens)
        return self.encoders[name](tokens)

    def fuse(
        self, features: list[torch.Tensor | None], present: list[torch.Tensor | None], b: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality features (None: missing for every sample) and presence masks → q(z | ...), 2 × (B, Z)."""
        inputs = []
        for f, p, missing in zip(features, present, (self.missing_image, self.missing_text)):
            missing = missing.expand(b, *missing.shape[1:])
            inputs.append(missing if f is None else f if p is None else _select(p, f, missing))
        return self.gaussian(self.posterior(self.fusion(inputs)))  # (B, d) -> 2 × (B, Z)

    def encode(self, image, text, image_present=None, text_present=None):  # noqa: D102 (see MultimodalVAE.encode)
        b = self._batch_size(image, text)
        features = [None if x is None else self.features(name, x) for name, x in zip(self.modalities, (image, text))]
        return self.fuse(features, [image_present, text_present], b)

    def pooled(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, d)] pooled embeddings of the features (token sequences are mean-pooled, as the classifiers do)."""
        return [f.mean(dim=1) for f in features] if self.input_kind == "tokens" else features

    def training_objective(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative ELBO of (x, w) under modality dropout, plus ``align_weight`` × the alignment loss."""
        image, text = batch["image"], batch["text"]
        image_present, text_present = self.modality_dropout(len(image), image.device)
        features = [self.features("image", image), self.features("text", text)]
        mu, logvar = self.fuse(features, [image_present, text_present], len(image))
        rec_image, rec_text = self.reconstruction_terms(self.reparameterize(mu, logvar), image, text)
        kl = gaussian_kl(mu, logvar)
        loss = (rec_image + self.text_weight * rec_text + kl).mean()
        logs = {"rec_image": rec_image.mean(), "rec_text": rec_text.mean(), "kl": kl.mean()}
        if self.alignment is not None:
            logs["align"] = self.alignment(self.pooled(features))
            loss = loss + self.hparams.align_weight * logs["align"]
        return loss, logs


# ================================================================================================= late fusion
class UnimodalExpertsMVAE(MultimodalVAE):
    """Unregistered base of the late-fusion VAEs (``mvae-late``, ``mopoe``, ``mmvae``): one Gaussian expert per
    modality, ``q̃(z | x_m)`` = a Transformer over the modality's tokens and a linear head; subclasses combine the
    experts (a product, a mixture of products, a mixture).

    Args:
        config: As :class:`MultimodalVAE`.
    """

    fusion_stage = "late"

    def __init__(self, config: MultimodalVAEConfig) -> None:
        super().__init__(config)
        self.encoders = nn.ModuleDict({name: self.make_encoder() for name in self.modalities})
        self.experts = nn.ModuleDict({name: self.posterior_head() for name in self.modalities})

    def expert(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unimodal expert q̃(z | x_name) (without the prior): mean and log-variance, each (B, Z)."""
        return self.gaussian(self.experts[name](self.encoders[name](self.tokenizers[name](x))))


@MODELS.register("mvae-late")
class LateFusionMVAE(UnimodalExpertsMVAE):
    """MVAE (Wu & Goodman, 2018): one Gaussian expert per modality, q̃(z | x) and q̃(z | w), each a Transformer and a
    linear head; the posterior of any subset of modalities is the product of its experts and the N(0, I) prior.

    Training minimizes MVAE's sub-sampled objective: ``-ELBO(x, w) - ELBO(x) - ELBO(w)`` with
    ``ELBO(x, w) = E_q(z|x,w)[log p(x|z) + λ log p(w|z)] - KL``, ``ELBO(x) = E_q(z|x)[log p(x|z)] - KL`` and
    ``ELBO(w) = E_q(z|w)[λ log p(w|z)] - KL`` (λ = ``text_weight``), so each unimodal posterior is trained directly.
    Logged besides the joint parts: ``train_nelbo_joint``, ``train_nelbo_image``, ``train_nelbo_text``.

    Args: as :class:`MultimodalVAE`.
    """

    fusion_stage = "late"
    fusion_operator = "poe"

    def __init__(
        self,
        image_shape: tuple[int, int, int] = DEFAULTS.image_shape,
        vocab_size: int = DEFAULTS.vocab_size,
        text_length: int = DEFAULTS.text_length,
        latent_dim: int = DEFAULTS.latent_dim,
        width: int = DEFAULTS.width,
        d_model: int = DEFAULTS.d_model,
        n_layers: int = DEFAULTS.n_layers,
        n_heads: int = DEFAULTS.n_heads,
        patch_size: int = DEFAULTS.patch_size,
        text_weight: float = DEFAULTS.text_weight,
        dropout: float = DEFAULTS.dropout,
        lr: float = DEFAULTS.lr,
    ) -> None:
        super().__init__(MultimodalVAEConfig.pick(locals()))
        self.save_hyperparameters()
        self.fusion_stage, self.fusion_operator = "late", "poe"

    def encode(self, image, text, image_present=None, text_present=None):  # noqa: D102 (see MultimodalVAE.encode)
        b = self._batch_size(image, text)
        mus, logvars, masks = [], [], []
        for name, x, present in zip(self.modalities, (image, text), (image_present, text_present)):
            if x is None:
                continue  # absent for every sample: not in the product
            mu, logvar = self.expert(name, x)
            mus.append(mu)
            logvars.append(logvar)
            masks.append(present if present is not None else torch.ones(b, dtype=torch.bool, device=mu.device))
        return product_of_experts(torch.stack(mus), torch.stack(logvars), torch.stack(masks), include_prior=True)

    def training_objective(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MVAE's sub-sampled objective (class docstring), nats per sample."""
        image, text = batch["image"], batch["text"]
        b = len(image)
        (mu_x, lv_x), (mu_w, lv_w) = self.expert("image", image), self.expert("text", text)
        mus, logvars = torch.stack([mu_x, mu_w]), torch.stack([lv_x, lv_w])  # (2, B, Z)
        posteriors = {  # q(z | x, w), q(z | x), q(z | w): each the experts' product with the prior
            "joint": product_of_experts(mus, logvars),
            "image": product_of_experts(mus[:1], logvars[:1]),
            "text": product_of_experts(mus[1:], logvars[1:]),
        }
        z = {k: self.reparameterize(mu, lv) for k, (mu, lv) in posteriors.items()}
        kl = {k: gaussian_kl(mu, lv) for k, (mu, lv) in posteriors.items()}
        # one decoder call per modality over every posterior that reconstructs it
        rec_image = -bernoulli_log_likelihood(self.image_decoder(torch.cat([z["joint"], z["image"]])),
                                              image.repeat(2, 1, 1, 1))  # (2B,)
        rec_text = -categorical_log_likelihood(self.text_decoder(torch.cat([z["joint"], z["text"]])),
                                               text.repeat(2, 1))  # (2B,)
        lam = self.text_weight
        nelbo = {
            "joint": rec_image[:b] + lam * rec_text[:b] + kl["joint"],
            "image": rec_image[b:] + kl["image"],
            "text": lam * rec_text[b:] + kl["text"],
        }
        loss = (nelbo["joint"] + nelbo["image"] + nelbo["text"]).mean()
        logs = {"rec_image": rec_image[:b].mean(), "rec_text": rec_text[:b].mean(), "kl": kl["joint"].mean()}
        logs.update({f"nelbo_{k}": v.mean() for k, v in nelbo.items()})
        return loss, logs


def _check_p_drop(p_drop: float) -> None:
    if not 0.0 <= p_drop <= 0.5:
        raise ValueError(f"p_drop must be in [0, 0.5] (image and caption are never dropped together), got {p_drop}")
