"""Family base classes: what the evaluator may ask of a model, whatever its name.

* :class:`ImageGenerator` — ``sample(n, generator=None)`` returns images in [0, 1];
* :class:`LikelihoodModel` — also ``nll(x, num_samples, generator)``, a negative log-likelihood (bound) per image;
* :class:`AutoEncoder` — a likelihood model with ``reconstruct(x)`` and ``elbo(x)`` (a lower bound, nats per image);
* :class:`TextToImageGenerator` — ``sample_from_text(text, generator)``: images generated from caption tokens
  (text-to-image models, and multimodal VAEs generating across modalities);
* :class:`Classifier` — ``predict_logits(batch)`` returns class logits (fusion classifiers and baselines).

The evaluator checks these base classes (capabilities), never model names.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch

from bench.weights_files import WeightsFileError, check_state_dict, load_into, read_payload
from datamodules.base import DataSpec


class BenchModule(pl.LightningModule):
    """Base of every registered model.

    Attributes:
        family: The model family shown in result tables ("gan", "vae", "fusion", ...).
        fusion_stage: Where the model fuses its modalities ("early", "mid", "late"; "" for unimodal models),
            a leaderboard column. Fusion models set it (per instance when it depends on their arguments).
        fusion_operator: The registered fusion operator it uses (``bench list fusions``; "" if none), a column.
    """

    registry_name: ClassVar[str]
    family: ClassVar[str] = ""
    fusion_stage: str = ""
    fusion_operator: str = ""

    #: Set by :class:`bench.callbacks.DivergenceMonitor` when a loss became NaN/inf, with what happened.
    diverged: bool = False
    divergence_message: str = ""

    @classmethod
    def from_data(cls, spec: DataSpec, **hparams: Any) -> BenchModule:
        """Builds the model for a dataset: the shape facts its ``__init__`` asks for come from ``spec``.

        Raises:
            TypeError: If ``hparams`` names an argument the model does not take (the message lists them).
        """
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(hparams) - set(params))
        if unknown:
            accepted = sorted(p for p in params if p != "self" and p not in spec.as_kwargs())
            raise TypeError(f"{cls.registry_name}: unknown argument(s) {unknown}; accepted: {accepted}")
        data_kwargs = {k: v for k, v in spec.as_kwargs().items() if k in params}
        return cls(**data_kwargs, **hparams)

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The loss of one batch, logged as ``{stage}_<name>`` (the Lightning style guide's shared step), which
        the ``training_step`` / ``validation_step`` / ``test_step`` below call with ``stage`` "train", "val" and
        "test". Models that train through steps of their own (e.g. GANs' manual optimization) need not define it.
        """
        raise NotImplementedError(f"{type(self).__name__} defines neither _common_step nor its own training steps")

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._common_step(batch, "test")

    def required_modalities(self) -> tuple[str, ...]:
        """Batch keys (besides ``label``) the model reads; the runner checks the datamodule provides them."""
        return ("image",)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_weights(self, path: str | Path) -> None:
        """Saves ``{"hparams": ..., "state_dict": ...}`` (plain tensors and builtins, loadable with weights_only)."""
        torch.save({"hparams": dict(self.hparams), "state_dict": self.state_dict()}, path)

    @classmethod
    def load_weights(cls, path: str | Path) -> BenchModule:
        """Rebuilds a model saved by :meth:`save_weights`, reading the file with ``weights_only=True``.

        Raises:
            WeightsFileError: (an ``InputError``) The file is missing, unreadable (corrupt, truncated, pickled
                objects), not a ``save_weights`` file, or one of another model or configuration; one line naming it.
        """
        what = f"{cls.__name__}.load_weights"
        accepted = f"a file written by {cls.__name__}.save_weights ({{'hparams': ..., 'state_dict': ...}})"
        hint = "re-create it by training the model (bench run saves runs/<suite>/weights/<run>.pt)"
        kwargs = {"accepted": accepted, "hint": hint, "error": WeightsFileError}
        payload = read_payload(path, what, **kwargs)
        if not isinstance(payload, dict) or not isinstance(payload.get("hparams"), dict) or "state_dict" not in payload:
            found = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
            raise WeightsFileError(f"{what}: weights file {path} is not a save_weights file (found {found}); "
                                   f"accepted: {accepted}; {hint}")
        state = check_state_dict(payload["state_dict"], path, what, **kwargs)
        try:
            model = cls(**payload["hparams"])
        except (TypeError, ValueError) as err:  # hparams of another model, or values this one refuses
            raise WeightsFileError(
                f"{what}: weights file {path} holds hparams {cls.__name__} cannot be built from ({err}); accepted: "
                f"{accepted}"
            ) from err
        load_into(model, state, path, what, target=f"the {cls.__name__} its hparams describe",
                  hint=f"it must be saved by a {cls.__name__} of the same configuration", error=WeightsFileError)
        return model


class ImageGenerator(BenchModule):
    """A model that generates images."""

    image_shape: tuple[int, int, int]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws ``n`` images, (n, C, H, W) float in [0, 1], on the model's device.

        Args:
            n: Number of images.
            generator: Source of the latent noise (CPU generator); None uses the global RNG.
        """
        raise NotImplementedError


class LikelihoodModel(ImageGenerator):
    """A generator that assigns its images a likelihood (exact, or an upper bound on the NLL).

    Attributes:
        likelihood: The observation model ``nll`` is measured under, stated in the metric's protocol (e.g.
            "bernoulli": the Bernoulli surrogate on [0, 1] intensities; "categorical-16": a categorical over 16
            quantized intensity levels per pixel).
        nll_bound: What ``nll`` returns relative to the true NLL: "exact", or "upper(IWAE)" for a bound.
    """

    likelihood: ClassVar[str] = "bernoulli(surrogate on [0;1] intensities)"
    nll_bound: ClassVar[str] = "exact"

    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood per image, (B,) in nats (lower is better).

        Args:
            x: (B, C, H, W) images in [0, 1] on the model's device.
            num_samples: Importance samples per image for models with a latent variable (ignored by models with
                an exact likelihood, e.g. autoregressive ones).
            generator: Source of any sampling noise (CPU generator); None uses the global RNG.
        """
        raise NotImplementedError

    def likelihood_dims(self) -> int:
        """Dimensions the NLL is spread over for bits/dim (C·H·W of ``image_shape`` unless the model scores a
        reduced representation, e.g. a downsampled quantized image; the protocol then records it)."""
        return math.prod(self.image_shape)

    @staticmethod
    def bits_per_dim(nats: torch.Tensor, image_shape: tuple[int, ...]) -> torch.Tensor:
        """Nats per image → bits per dimension: ``nats / (C·H·W · ln 2)``."""
        num_dims = 1
        for s in image_shape:
            num_dims *= int(s)
        return nats / (num_dims * math.log(2))


class AutoEncoder(LikelihoodModel):
    """A generator with an encoder: reconstructions and likelihood bounds.

    ``nll`` is the importance-sampled bound (IWAE, Burda et al., 2016): ``-log (1/K) Σ_k p(x, z_k) / q(z_k | x)``
    with ``z_k ~ q(z | x)``, an upper bound on -log p(x) that tightens as K grows; K = 1 is the negative
    single-sample ELBO. Call it in eval mode (batch norm). Models with a deterministic posterior return
    ``-elbo(x)`` for every K.
    """

    nll_bound: ClassVar[str] = "upper(IWAE)"

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (posterior mean through the decoder mean), same shape as ``x`` in [0, 1]."""
        raise NotImplementedError

    def reconstruct_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction of ``batch["image"]`` from everything the model reads in ``batch`` (multimodal models
        override this to use their other modalities too); by default ``reconstruct(batch["image"])``."""
        return self.reconstruct(batch["image"])

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Evidence lower bound per image, (B,) in nats (higher is better)."""
        raise NotImplementedError


class TextToImageGenerator(ImageGenerator):
    """A generator that draws images conditioned on caption tokens."""

    def required_modalities(self) -> tuple[str, ...]:
        return ("image", "text")

    def sample_from_text(self, text: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One image per caption, (B, C, H, W) float in [0, 1], on the model's device.

        Args:
            text: (B, L) long caption token ids (the datamodule's vocabulary, right-padded with 0) on the
                model's device.
            generator: Source of the sampling noise (CPU generator); None uses the global RNG.
        """
        raise NotImplementedError


class Classifier(BenchModule):
    """A model that predicts class logits from a batch dict."""

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) class logits for a batch."""
        raise NotImplementedError
