"""Family base classes: what the evaluator may ask of a model, whatever its name.

* :class:`ImageGenerator` — ``sample(n, generator=None)`` returns images in [0, 1];
* :class:`AutoEncoder` — also ``reconstruct(x)`` and ``elbo(x)`` (a likelihood lower bound, nats per image);
* :class:`Classifier` — ``predict_logits(batch)`` returns class logits (fusion classifiers and baselines).

The evaluator checks these base classes (capabilities), never model names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch

from datamodules.base import DataSpec


class BenchModule(pl.LightningModule):
    """Base of every registered model.

    Attributes:
        family: The model family shown in result tables ("gan", "vae", "fusion", ...).
    """

    registry_name: ClassVar[str]
    family: ClassVar[str] = ""

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
        """Rebuilds a model saved by :meth:`save_weights`, reading the file with ``weights_only=True``."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**payload["hparams"])
        model.load_state_dict(payload["state_dict"])
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


class AutoEncoder(ImageGenerator):
    """A generator with an encoder: reconstructions and likelihood bounds.

    Attributes:
        likelihood: The decoder's observation model that ``elbo`` and ``nll`` are measured under ("bernoulli":
            the Bernoulli surrogate on [0, 1] intensities, not a normalized density on 8-bit data).
    """

    likelihood: ClassVar[str] = "bernoulli"

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (posterior mean through the decoder mean), same shape as ``x`` in [0, 1]."""
        raise NotImplementedError

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Evidence lower bound per image, (B,) in nats (higher is better)."""
        raise NotImplementedError

    def nll(self, x: torch.Tensor, num_samples: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-sampled negative log-likelihood estimate per image, (B,) in nats (lower is better).

        The IWAE bound (Burda et al., 2016): ``-log (1/K) Σ_k p(x, z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)``,
        an upper bound on -log p(x) that tightens as K grows; K = 1 is the negative single-sample ELBO. Call it
        in eval mode (batch norm). Models with a deterministic posterior return ``-elbo(x)`` for every K.

        Args:
            x: (B, C, H, W) images in [0, 1] on the model's device.
            num_samples: K, posterior samples per image.
            generator: Source of the posterior noise (CPU generator); None uses the global RNG.
        """
        raise NotImplementedError

    @staticmethod
    def bits_per_dim(nats: torch.Tensor, image_shape: tuple[int, ...]) -> torch.Tensor:
        """Nats per image → bits per dimension: ``nats / (C·H·W · ln 2)``."""
        import math

        num_dims = 1
        for s in image_shape:
            num_dims *= int(s)
        return nats / (num_dims * math.log(2))


class Classifier(BenchModule):
    """A model that predicts class logits from a batch dict."""

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, K) class logits for a batch."""
        raise NotImplementedError
