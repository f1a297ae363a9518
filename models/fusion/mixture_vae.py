"""Mixture-posterior multimodal VAEs: MoPoE (Sutter et al., 2021) and MMVAE (Shi et al., 2019).

Both are late-fusion models on the same heads as ``mvae-late`` (:class:`~models.fusion.multimodal_vae.
UnimodalExpertsMVAE`: one Transformer + Gaussian expert per modality, the Bernoulli image decoder and the categorical
text decoder of :class:`~models.fusion.multimodal_vae.MultimodalVAE`, an N(0, I) prior). They differ from MVAE's
product of experts in the joint posterior, a uniform mixture of Gaussian *components*, one per subset of modalities:

* ``mopoe`` — Mixture of Products of Experts, "Generalized Multimodal ELBO" (Sutter, Daunhawer & Vogt, ICLR 2021):
  one component per non-empty subset S of the modalities, the product of the experts of S,
  ``q(z | x, w) = 1/3 [q̃(z|x) + q̃(z|w) + p(z) q̃(z|x) q̃(z|w)]`` for image + caption. As in the paper's code and
  MultiVae (``prior_expert="full"``), the prior expert is in the product of *all* modalities only;
  ``prior_expert="all"`` puts it in every subset (then q(z | x) is ``mvae-late``'s). Objective (the paper's):
  ``E_q(z|x,w)[log p(x|z) + λ log p(w|z)] - Σ_S 1/3 KL(q_S || p)``, the mixture's KL replaced by its Jensen upper
  bound. The expectation under the mixture is **stratified over the subsets**: every sample draws one z from every
  component and the three reconstructions are averaged with the mixture weights. The paper's code (and MultiVae)
  instead assigns each sample of the batch to one subset (B/3 samples each); that is the same objective with one
  stratum per sample, so its expectation is ours (``tests/models/test_mopoe_mmvae.py`` recovers MultiVae 1.0.3's
  loss from our per-subset terms). Cost: 3 decoder passes per sample instead of 1.
* ``mmvae`` — Mixture of Experts, "Variational Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative
  Models" (Shi, Siddharth, Paige & Torr, NeurIPS 2019): the components are the unimodal experts themselves (no prior
  expert), ``q(z | x, w) = 1/2 [q̃(z|x) + q̃(z|w)]``. Objective: the paper's *stratified* importance-weighted bound
  (its ``m_iwae_looser`` / MultiVae's ``iwae_looser``), K = ``iwae_samples`` draws from each expert,
  ``1/M Σ_m log 1/K Σ_k w_mk`` with ``w_mk = p(x|z_mk) p(w|z_mk)^λ p(z_mk) / q(z_mk | x, w)`` and the mixture
  density in the denominator; every z reconstructs *both* modalities (cross-modal terms). ``objective="dreg"``
  (default, the paper's ``m_dreg_looser`` / MultiVae's ``dreg_looser``) trains it with the doubly reparameterized
  gradient estimator (Tucker et al., 2019): the posterior parameters are detached inside ``log q``, the loss is
  ``-Σ_k ŵ_mk log w_mk`` with normalized weights ŵ held fixed, and the gradient reaching each z is multiplied by
  ``ŵ_mk`` once more (so the encoder sees ŵ², the decoders ŵ); ``objective="iwae"`` uses the plain reparameterized
  gradient of the bound. The logged ``train_loss`` is the bound itself in both cases. Posteriors and prior are
  Gaussian (the paper's Laplace-with-softmax posteriors and learned prior are not used, so the models share heads,
  KL terms and the likelihood evaluation with the other multimodal VAEs).

Shared by both (:class:`MixtureMVAE`):

* ``encode`` returns one Gaussian per sample: the posterior of the present modalities when it is a single
  component (one modality present: ``q(z | w)`` for ``sample_from_text``, ``q(z | x)`` for ``elbo``, ``nll`` and
  ``reconstruct``), otherwise the Gaussian with the mixture's mean and diagonal variance (moment matching), so
  ``reconstruct_batch`` decodes the mixture's mean, MultiVae's ``encode(return_mean=True)``;
* ``val_loss`` is ``-ELBO(x, w)`` (text weight 1) under the mixture posterior itself, with its exact log-density
  (``log q = logsumexp_S log(1/|S| q_S(z))``) and one z per component (stratified), the same quantity the other
  multimodal VAEs log; ``val_kl`` is the Monte-Carlo estimate of ``KL(q(z | x, w) || p(z))`` it uses;
* the prior is the same N(0, I) as every multimodal VAE's (``log_standard_normal`` in the bounds, ``gaussian_kl``
  against it in MoPoE's objective), so ``sample`` and ``sample_joint`` (both modalities from prior draws, for
  ``joint-coherence``) are the base's, unchanged.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import ClassVar

import torch

from models.fusion.multimodal_vae import DEFAULTS, MultimodalVAEConfig, UnimodalExpertsMVAE, gaussian_kl
from models.fusion.poe import product_of_experts
from models.registry import MODELS
from models.vae.likelihood import log_normal_diag, log_standard_normal

PRIOR_EXPERT_CHOICES = ("full", "all")
OBJECTIVES = ("dreg", "iwae")


def log_mixture_density(
    z: torch.Tensor, mus: torch.Tensor, logvars: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """log Σ_s weights_s · N(z; mus_s, diag(exp(logvars_s))), (..., B, Z) with (S, B, Z), (S, B) -> (..., B) nats.

    A component of weight 0 adds nothing (its log-weight is -inf inside the ``logsumexp``).
    """
    log_components = log_normal_diag(z.unsqueeze(-3), mus, logvars)  # (..., S, B)
    return torch.logsumexp(log_components + weights.log(), dim=-2)  # (..., B)


def moment_matched_gaussian(
    mus: torch.Tensor, logvars: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance of the mixture Σ_s weights_s N(mus_s, exp(logvars_s)), (S, B, Z), (S, B) -> 2 × (B, Z).

    ``var = Σ_s w_s (σ_s² + (μ_s - μ)²)``: exact mean and diagonal variance; a single component of weight 1 comes
    back unchanged (up to ``log(exp(.))`` rounding).
    """
    w = weights.unsqueeze(-1)  # (S, B, 1)
    mu = (w * mus).sum(0)  # (B, Z)
    var = (w * (logvars.exp() + (mus - mu).pow(2))).sum(0)  # (B, Z)
    return mu, var.log()


class MixtureMVAE(UnimodalExpertsMVAE):
    """Unregistered base: the joint posterior is a uniform mixture over :attr:`subsets` of Gaussian components.

    Subclasses set :attr:`subsets` (tuples of modality names) and :attr:`prior_in_subset`, and implement
    :meth:`training_objective`; the module docstring describes ``encode`` and the validation ELBO.

    Args:
        config: As :class:`~models.fusion.multimodal_vae.MultimodalVAE`.
    """

    #: The components: the subsets of modalities whose experts' product is one mixture component.
    subsets: tuple[tuple[str, ...], ...]

    def prior_in_subset(self, subset: tuple[str, ...]) -> bool:
        """Whether the N(0, I) prior expert is a factor of ``subset``'s component."""
        return False

    def subset_posterior(
        self, subset: tuple[str, ...], mus: dict[str, torch.Tensor], logvars: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The component of ``subset``: the product of its experts (and the prior expert), 2 × (B, Z)."""
        if len(subset) == 1 and not self.prior_in_subset(subset):
            return mus[subset[0]], logvars[subset[0]]
        return product_of_experts(torch.stack([mus[m] for m in subset]), torch.stack([logvars[m] for m in subset]),
                                  include_prior=self.prior_in_subset(subset))

    def components(
        self,
        image: torch.Tensor | None,
        text: torch.Tensor | None,
        image_present: torch.Tensor | None = None,
        text_present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture posterior q(z | the present modalities) of each sample.

        A sample's mixture is uniform over the components whose modalities are all present for it; the others
        get weight 0 (their parameters are finite placeholders, never used).

        Args: as :meth:`~models.fusion.multimodal_vae.MultimodalVAE.encode`.

        Returns:
            ``(mus, logvars, weights)``: (S, B, Z), (S, B, Z) and (S, B), S = ``len(self.subsets)``, the weights of
            each sample summing to 1.

        Raises:
            ValueError: If a sample has no present modality.
        """
        b = self._batch_size(image, text)
        mus, logvars, present = {}, {}, {}
        for name, x, p in zip(self.modalities, (image, text), (image_present, text_present)):
            if x is None:
                continue  # absent for every sample: every component containing it gets weight 0
            mus[name], logvars[name] = self.expert(name, x)  # (B, Z) each
            present[name] = p.to(torch.bool) if p is not None else torch.ones(b, dtype=torch.bool, device=x.device)
        ref = next(iter(mus.values()))
        comp_mus, comp_logvars, available = [], [], []
        for subset in self.subsets:
            if not all(m in mus for m in subset):
                comp_mus.append(torch.zeros_like(ref))
                comp_logvars.append(torch.zeros_like(ref))
                available.append(torch.zeros(b, dtype=torch.bool, device=ref.device))
                continue
            mu, logvar = self.subset_posterior(subset, mus, logvars)
            comp_mus.append(mu)
            comp_logvars.append(logvar)
            available.append(torch.stack([present[m] for m in subset]).all(0))
        avail = torch.stack(available).to(ref.dtype)  # (S, B)
        counts = avail.sum(0)  # (B,)
        if not bool((counts > 0).all()):
            raise ValueError("every sample needs at least one present modality")
        return torch.stack(comp_mus), torch.stack(comp_logvars), avail / counts

    def encode(self, image, text, image_present=None, text_present=None):  # noqa: D102 (see the module docstring)
        return moment_matched_gaussian(*self.components(image, text, image_present, text_present))

    def decode_terms(
        self, z: torch.Tensor, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-log p(x | z) and -log p(w | z) for z of shape (..., B, Z): one call per decoder, each (..., B) nats."""
        lead, (b, z_dim) = z.shape[:-2], z.shape[-2:]
        n = math.prod(lead)
        rec_image, rec_text = self.reconstruction_terms(
            z.reshape(n * b, z_dim), image.repeat(n, *[1] * (image.dim() - 1)), text.repeat(n, 1))
        return rec_image.view(*lead, b), rec_text.view(*lead, b)

    def validation_objective(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-ELBO(x, w) (text weight 1) under the mixture posterior with its exact density, one z per component."""
        image, text = batch["image"], batch["text"]
        mus, logvars, weights = self.components(image, text)  # (S, B, Z), (S, B)
        z = mus + torch.randn_like(mus) * (0.5 * logvars).exp()  # (S, B, Z)
        rec_image, rec_text = self.decode_terms(z, image, text)  # (S, B) each
        kl = log_mixture_density(z, mus, logvars, weights) - log_standard_normal(z)  # (S, B): log q - log p
        terms = {k: (weights * v).sum(0) for k, v in {"rec_image": rec_image, "rec_text": rec_text, "kl": kl}.items()}
        loss = (terms["rec_image"] + terms["rec_text"] + terms["kl"]).mean()
        logs = {k: v.mean() for k, v in terms.items()}
        logs["nelbo_image"] = -self._elbo(image).mean()
        return loss, logs


# ========================================================================================================= MoPoE
@MODELS.register("mopoe")
class MoPoEVAE(MixtureMVAE):
    """MoPoE-VAE (Sutter et al., 2021): the joint posterior is the uniform mixture over the non-empty subsets of the
    modalities of their experts' products; trained on the generalized multimodal ELBO (module docstring).

    Logged besides ``train_rec_image`` / ``train_rec_text`` / ``train_kl`` (mixture-weighted): ``train_nelbo_<S>``,
    the negative ELBO of each subset's component (``image``, ``text``, ``image_text``), text weighted by λ.

    Args:
        prior_expert: ``"full"`` (the paper, MultiVae): the N(0, I) prior expert is a factor of the product of all
            modalities only; ``"all"``: of every subset's product.
        Others: as :class:`~models.fusion.multimodal_vae.MultimodalVAE`.

    Raises:
        ValueError: If ``prior_expert`` is not one of ``"full"``, ``"all"``.
    """

    fusion_operator = "mopoe"
    subsets: ClassVar[tuple[tuple[str, ...], ...]] = tuple(
        s for n in range(1, len(UnimodalExpertsMVAE.modalities) + 1)
        for s in combinations(UnimodalExpertsMVAE.modalities, n)
    )  # ("image",), ("text",), ("image", "text")

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
        prior_expert: str = "full",
        dropout: float = DEFAULTS.dropout,
        lr: float = DEFAULTS.lr,
    ) -> None:
        if prior_expert not in PRIOR_EXPERT_CHOICES:
            raise ValueError(f"mopoe: prior_expert must be one of {', '.join(PRIOR_EXPERT_CHOICES)}; "
                             f"got {prior_expert!r}")
        super().__init__(MultimodalVAEConfig.pick(locals()))
        self.save_hyperparameters()
        self.prior_expert = prior_expert

    def prior_in_subset(self, subset: tuple[str, ...]) -> bool:
        return self.prior_expert == "all" or len(subset) == len(self.modalities)

    def subset_terms(self, batch: dict[str, torch.Tensor], eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per component and sample: rec_image, rec_text (one z from each component), kl, weights; each (S, B).

        Args:
            batch: ``image`` (B, C, H, W) and ``text`` (B, L).
            eps: (S, B, Z) standard normal noise of the S posterior samples (None: drawn from the global RNG).
        """
        image, text = batch["image"], batch["text"]
        mus, logvars, weights = self.components(image, text)  # (S, B, Z), (S, B)
        if eps is None:
            eps = torch.randn_like(mus)
        z = mus + eps * (0.5 * logvars).exp()  # (S, B, Z)
        rec_image, rec_text = self.decode_terms(z, image, text)  # (S, B) each
        kl = gaussian_kl(mus.flatten(0, 1), logvars.flatten(0, 1)).view_as(weights)  # (S, B)
        return {"rec_image": rec_image, "rec_text": rec_text, "kl": kl, "weights": weights}

    def training_objective(
        self, batch: dict[str, torch.Tensor], eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The negative generalized multimodal ELBO (module docstring), nats per sample; ``eps`` as
        :meth:`subset_terms`."""
        t = self.subset_terms(batch, eps)
        nelbo = t["rec_image"] + self.text_weight * t["rec_text"] + t["kl"]  # (S, B)
        loss = (t["weights"] * nelbo).sum(0).mean()
        logs = {k: (t["weights"] * t[k]).sum(0).mean() for k in ("rec_image", "rec_text", "kl")}
        logs.update({f"nelbo_{'_'.join(s)}": nelbo[i].mean() for i, s in enumerate(self.subsets)})
        return loss, logs


# ========================================================================================================= MMVAE
@MODELS.register("mmvae")
class MMVAE(MixtureMVAE):
    """MMVAE (Shi et al., 2019): the joint posterior is the uniform mixture of the unimodal experts; trained on the
    stratified IWAE bound with the DReG gradient estimator (module docstring).

    Logged besides ``train_rec_image`` / ``train_rec_text`` (averaged over every z of every expert) and
    ``train_kl`` (Monte-Carlo ``log q(z | x, w) - log p(z)``): ``train_niwae_image`` and ``train_niwae_text``, the
    negative K-sample bound of each expert's stratum (text weighted by λ).

    Args:
        iwae_samples: K, the importance samples drawn from each expert per training sample.
        objective: ``"dreg"`` (DReG gradients, the paper's ``dreg_looser``) or ``"iwae"`` (plain reparameterized
            gradients of the same bound, ``iwae_looser``).
        Others: as :class:`~models.fusion.multimodal_vae.MultimodalVAE`.

    Raises:
        ValueError: If ``iwae_samples < 1`` or ``objective`` is not ``"dreg"`` / ``"iwae"``.
    """

    fusion_operator = "moe"
    subsets: ClassVar[tuple[tuple[str, ...], ...]] = tuple((m,) for m in UnimodalExpertsMVAE.modalities)

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
        iwae_samples: int = 10,
        objective: str = "dreg",
        dropout: float = DEFAULTS.dropout,
        lr: float = DEFAULTS.lr,
    ) -> None:
        if iwae_samples < 1:
            raise ValueError(f"mmvae: iwae_samples must be >= 1, got {iwae_samples}")
        if objective not in OBJECTIVES:
            raise ValueError(f"mmvae: objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        super().__init__(MultimodalVAEConfig.pick(locals()))
        self.save_hyperparameters()
        self.iwae_samples, self.objective = iwae_samples, objective

    def log_weights(
        self, batch: dict[str, torch.Tensor], eps: torch.Tensor | None = None, detach_posterior: bool = False
    ) -> dict[str, torch.Tensor]:
        """The importance log-weights of K draws from each expert and their parts, each (M, K, B).

        Args:
            batch: ``image`` (B, C, H, W) and ``text`` (B, L).
            eps: (M, K, B, Z) standard normal noise (None: drawn from the global RNG), M = 2 experts.
            detach_posterior: Evaluate ``log q(z | x, w)`` with detached posterior parameters (DReG), so the
                encoders' gradient flows through the samples z only.

        Returns:
            ``log_w`` (text weighted by λ), ``rec_image``, ``rec_text`` (-log p(. | z)), ``log_q``, ``log_p`` and the
            samples ``z`` (M, K, B, Z).
        """
        image, text = batch["image"], batch["text"]
        mus, logvars, weights = self.components(image, text)  # (M, B, Z), (M, B)
        if eps is None:
            eps = torch.randn(len(mus), self.iwae_samples, *mus.shape[1:], device=mus.device, dtype=mus.dtype)
        z = mus.unsqueeze(1) + eps * (0.5 * logvars).exp().unsqueeze(1)  # (M, K, B, Z)
        q_mus, q_logvars = (mus.detach(), logvars.detach()) if detach_posterior else (mus, logvars)
        log_q = log_mixture_density(z, q_mus, q_logvars, weights)  # (M, K, B)
        log_p = log_standard_normal(z)  # (M, K, B)
        rec_image, rec_text = self.decode_terms(z, image, text)  # (M, K, B) each
        log_w = -rec_image - self.text_weight * rec_text + log_p - log_q
        return {"log_w": log_w, "rec_image": rec_image, "rec_text": rec_text, "log_q": log_q, "log_p": log_p, "z": z}

    def training_objective(
        self, batch: dict[str, torch.Tensor], eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Minus the stratified IWAE bound (its value, nats per sample), with DReG or IWAE gradients; ``eps`` as
        :meth:`log_weights`."""
        dreg = self.objective == "dreg"
        t = self.log_weights(batch, eps, detach_posterior=dreg)
        log_w, k = t["log_w"], t["log_w"].shape[1]  # (M, K, B)
        bound_per_expert = torch.logsumexp(log_w, dim=1) - math.log(k)  # (M, B)
        bound = bound_per_expert.mean(0)  # (B,): 1/M Σ_m log 1/K Σ_k w_mk
        if dreg:
            with torch.no_grad():
                w_hat = torch.softmax(log_w, dim=1)  # (M, K, B): normalized over the K draws of each expert
            if t["z"].requires_grad:  # the encoders see ŵ² (one ŵ here, one in the surrogate)
                t["z"].register_hook(lambda grad: grad * w_hat.unsqueeze(-1))
            surrogate = (w_hat * log_w).sum(1).mean(0)  # (B,): gradient = DReG, value replaced by the bound
            bound = bound.detach() + surrogate - surrogate.detach()
        loss = -bound.mean()
        logs = {"rec_image": t["rec_image"].mean(), "rec_text": t["rec_text"].mean(),
                "kl": (t["log_q"] - t["log_p"]).mean()}
        logs.update({f"niwae_{s[0]}": -bound_per_expert[i].mean() for i, s in enumerate(self.subsets)})
        return loss, {k: v.detach() for k, v in logs.items()}
