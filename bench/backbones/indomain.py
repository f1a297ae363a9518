"""In-domain evaluator backbones: networks trained by this project's own command on its own data.

The real CLIP score needs OpenAI's CLIP weights (``clip-vit-b-32``), which machines without network cannot
fetch. These backbones measure the same things *in the domain of this project's data*, offline:

* ``clip-indomain-fashion`` — a small contrastive image–text model trained on ``captioned-fashion-mnist``:
  :meth:`ClipInDomainFashion.similarity` feeds the ``clip-score`` metric exactly as ``clip-vit-b-32`` does;
* ``classifier-indomain-fashion`` / ``classifier-indomain-digits`` — small CNN classifiers of Fashion-MNIST and of
  the half-occluded ``captioned-digits`` images: ``classify`` gives logits for conditional accuracy / coherence,
  ``forward`` and ``features_and_logits`` give penultimate features and logits for fast in-domain FID/KID/IS.

The names say "indomain": their scores are **not** comparable with OpenAI-CLIP scores or with Inception FID/IS.
Their validation quality is published in ``leaderboards/evaluators.md``.

Weights: ``bench/evaluators/weights/<name>.pt``, produced by ``python -m bench.evaluators train <name>`` (see
:mod:`bench.evaluators.train`) and read with ``torch.load(..., weights_only=True)``. The shipped file's sha256 is
pinned in :data:`PINNED_SHA256`: a file that does not match is refused (it was retrained or corrupted). An explicit
``weights_path`` (``--backbone-weights FILE``) is loaded whatever its hash, and that hash is recorded in
:attr:`weights_sha256` like every backbone's.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bench.backbones.base import BackboneWeightsError, FeatureBackbone, check_uint8_images
from bench.backbones.registry import BACKBONES
from bench.backbones.resize import check_resize_mode, resize_label, resize_uint8
from bench.evaluators.networks import (
    ClassifierConfig,
    ContrastiveConfig,
    ContrastiveImageText,
    ConvClassifier,
    WordTokenizer,
)
from bench.weights_files import check_state_dict, load_into, read_payload

#: Folder of the shipped weights files.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "evaluators" / "weights"
#: sha256 of each shipped weights file (update together with the file: `python -m bench.evaluators train NAME`).
PINNED_SHA256: dict[str, str] = {
    "clip-indomain-fashion": "4032661b89338a21fc1831ea93fb8cd747a6cc6ba28bfae5fa379151064b839c",
    "classifier-indomain-fashion": "d4ec2ba0d2dd24d916d013824815092c41c9789217966deeccc7f61a38b5b895",
    "classifier-indomain-digits": "c38cdff843b5d796d557254e253e44ed9a263b6a9c91f20eaa598c163b0e8de5",
}
#: ITU-R BT.601 luma weights: RGB inputs are converted to the 1-channel images the networks were trained on.
_LUMA = (0.299, 0.587, 0.114)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_evaluator_file(name: str, weights_path: str | os.PathLike | None = None) -> tuple[dict[str, Any], str, str]:
    """Reads and checks an evaluator weights file.

    Args:
        name: Registered name; the file must have been trained for it.
        weights_path: A file to load instead of the shipped one (its hash is not checked against the pin).

    Returns:
        The payload (see :mod:`bench.evaluators.train`), its sha256 and the path read.

    Raises:
        BackboneWeightsError: The file is missing, does not match the pinned sha256, cannot be read with
            ``weights_only=True``, or holds another evaluator.
    """
    retrain = f"python -m bench.evaluators train {name}"
    path = Path(weights_path) if weights_path is not None else WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        where = "the given weights file" if weights_path is not None else "the shipped weights file"
        raise BackboneWeightsError(
            f"{name}: {where} {path} does not exist. It is produced by `{retrain}` (a few CPU minutes; it writes "
            f"{WEIGHTS_DIR / (name + '.pt')}), or pass an evaluator file with --backbone-weights FILE"
        )
    sha = _sha256(path)
    pinned = PINNED_SHA256.get(name, "")
    if weights_path is None and sha != pinned:
        raise BackboneWeightsError(
            f"{name}: {path} has sha256 {sha}, but the pinned sha256 is {pinned or '(none)'}; the file was changed or "
            f"retrained. Restore the shipped file, or, if you retrained it on purpose with `{retrain}`, update "
            f"PINNED_SHA256 in {Path(__file__).name} (or load it explicitly with --backbone-weights {path})"
        )
    payload = read_payload(
        path, name, accepted=f"an evaluator file written by `{retrain}`", hint=f"re-create it with `{retrain}`"
    )
    required = {"name", "arch", "state_dict", "image_size", "trained_with", "validation"}
    if not isinstance(payload, dict) or not required <= payload.keys():
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise BackboneWeightsError(f"{name}: {path} is not an evaluator file (keys {sorted(required)}; found {found})")
    if payload["name"] != name:
        raise BackboneWeightsError(f"{name}: {path} holds the evaluator {payload['name']!r}, not {name!r}")
    return payload, sha, str(path)


class InDomainBackbone(FeatureBackbone):
    """Shared loading and preprocessing of the in-domain evaluators.

    Preprocessing: uint8 (B, 1 or 3, H, W); RGB converted to luma (BT.601); resized to the network's side S with
    ``resize_mode`` when H, W differ from it (recorded as ``resize = "<mode>-<S>"``); divided by 255.

    Args:
        weights_path: Evaluator file instead of the shipped one (hash recorded, not checked against the pin).
        size: Must be the network's input side (or None): the resolution is part of the trained network.
        resize_mode: One of :data:`bench.backbones.resize.RESIZE_MODES`, applied only to other sizes.

    Raises:
        BackboneWeightsError: See :func:`load_evaluator_file`. ValueError: Wrong ``size`` or ``resize_mode``.
    """

    kind: ClassVar[str]

    def __init__(
        self, weights_path: str | None = None, size: int | None = None, resize_mode: str = "bilinear"
    ) -> None:
        super().__init__()
        check_resize_mode(resize_mode)
        name = self.registry_name
        payload, sha, path = load_evaluator_file(name, weights_path)
        self.size = int(payload["image_size"])
        if size is not None and size != self.size:
            raise ValueError(
                f"{name} takes {self.size}x{self.size} images (the resolution is part of the trained network); "
                f"size={size} is not supported (other image sizes are resized to {self.size} automatically)"
            )
        self.resize_mode = resize_mode
        self.resize = resize_label(resize_mode, self.size)
        self.weights_sha256 = sha
        self.weights_path = path
        self.trained_with: dict[str, Any] = payload["trained_with"]
        self.validation: dict[str, float] = payload["validation"]
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self._build(payload)
        self.requires_grad_(False)
        self.eval()

    def _build(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _load_state(self, payload: dict[str, Any], kind: str) -> None:
        """Loads ``payload["state_dict"]`` into :attr:`net`, strictly, with a one-line error naming the file."""
        name, path = self.registry_name, self.weights_path
        retrain = f"re-create it with `python -m bench.evaluators train {name}`"
        accepted = "an evaluator file whose 'state_dict' entry maps parameter names to tensors"
        state = check_state_dict(payload["state_dict"], path, name, accepted=accepted, hint=retrain)
        load_into(self.net, state, path, name, target=f"the {kind} evaluator its 'arch' entry describes", hint=retrain)

    @property
    def device(self) -> torch.device:
        return self.luma.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 1, S, S) in [0, 1]
        check_uint8_images(images)
        x = resize_uint8(images.to(self.device), self.size, self.resize_mode)  # (B, C, S, S) on 0..255
        if x.shape[1] == 3:
            x = (x * self.luma).sum(1, keepdim=True)  # (B, 1, S, S)
        return x.clamp(0, 255).div(255.0)


@BACKBONES.register("clip-indomain-fashion")
class ClipInDomainFashion(InDomainBackbone):
    """Contrastive image–text evaluator of ``captioned-fashion-mnist`` (see the module docstring).

    ``forward`` returns L2-normalized image embeddings (B, E); :meth:`encode_text` L2-normalized caption
    embeddings; :meth:`similarity` their cosine per pair, the input of the ``clip-score`` metric. Captions are
    split on whitespace and lower-cased; words outside the training vocabulary map to an unknown token, and
    captions longer than the text length (the longest training caption) are truncated and counted in
    :attr:`last_num_truncated`, as with open_clip.
    """

    kind = "clip"

    def _build(self, payload: dict[str, Any]) -> None:
        try:
            config = ContrastiveConfig.from_dict(payload["arch"])
            self.net = ContrastiveImageText(config)
            self.tokenizer = WordTokenizer(payload["vocab"], int(payload["text_length"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # RuntimeError: impossible layer sizes
            raise BackboneWeightsError(
                f"{self.registry_name}: {self.weights_path} does not hold a contrastive evaluator ({err})"
            ) from err
        self._load_state(payload, "contrastive")
        self.num_features = config.embed_dim
        self.context_length = self.tokenizer.length
        self.last_num_truncated = 0

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, E) unit norm
        """L2-normalized image embeddings, float32."""
        return self.net.encode_image(self.preprocess(images))

    @torch.inference_mode()
    def encode_text(self, captions: list[str]) -> torch.Tensor:  # B captions -> (B, E) unit norm
        """L2-normalized caption embeddings, float32; truncations counted in :attr:`last_num_truncated`."""
        tokens = self.tokenizer.encode(captions)  # (B, L); raises TypeError on a bare string
        self.last_num_truncated = sum(self.tokenizer.num_words(c) > self.context_length for c in captions)
        if self.last_num_truncated:
            warnings.warn(
                f"{self.registry_name}: {self.last_num_truncated} of {len(captions)} captions exceed the "
                f"{self.context_length}-word text length and were truncated",
                stacklevel=2,
            )
        return self.net.encode_text(tokens.to(self.device))

    @torch.inference_mode()
    def similarity(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:  # -> (B,)
        """Cosine similarity of each image with its caption (pairs in order), float32 in [-1, 1]; feed
        :class:`bench.metrics.clip_score.CLIPScore` with it. Truncations: :attr:`last_num_truncated`."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions; they are scored in pairs")
        image_emb = self.forward(images)  # (B, E)
        text_emb = self.encode_text(captions)  # (B, E)
        return F.cosine_similarity(image_emb, text_emb, dim=-1)


class ClassifierInDomain(InDomainBackbone):
    """CNN classifier evaluator: ``forward`` → penultimate features (B, D), :meth:`classify` → logits (B, K)."""

    kind = "classifier"

    def _build(self, payload: dict[str, Any]) -> None:
        try:
            config = ClassifierConfig.from_dict(payload["arch"])
            self.net = ConvClassifier(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # RuntimeError: impossible layer sizes
            raise BackboneWeightsError(
                f"{self.registry_name}: {self.weights_path} does not hold a classifier evaluator ({err})"
            ) from err
        self._load_state(payload, "classifier")
        self.num_features = self.net.encoder.out_dim
        self.num_classes = config.num_classes

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, D)
        return self.net.encoder(self.preprocess(images))

    @torch.inference_mode()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) penultimate features and (B, K) class logits of one pass."""
        return self.net.features_and_logits(self.preprocess(images))

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, K)
        """Class logits (for conditional accuracy / coherence)."""
        return self.features_and_logits(images)[1]


@BACKBONES.register("classifier-indomain-fashion")
class ClassifierInDomainFashion(ClassifierInDomain):
    """Fashion-MNIST classifier (28×28, 10 classes, label order of ``fashion-mnist``); see the module docstring."""


@BACKBONES.register("classifier-indomain-digits")
class ClassifierInDomainDigits(ClassifierInDomain):
    """Classifier of the half-occluded 8×8 ``captioned-digits`` images (10 digits); see the module docstring."""
