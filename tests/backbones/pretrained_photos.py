"""The check every pretrained ImageNet backbone must pass: it recognizes real photos.

Random-weights agreement tests prove the code matches a reference implementation; they cannot show that the
network runs as its weights were trained (activation, normalization). A backbone that does not would still give
finite, image-dependent features — and every FID computed on it would be a property of a broken network. So each
pretrained backbone's test module subclasses :class:`PretrainedPhotoTests`: on real photos shipped by installed
packages (scikit-image, matplotlib, scikit-learn), the top-1 ImageNet class through the logits path (the one the
`is` metric uses) must be one of a few right classes, and the features path must be the logits path's
penultimate activations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones import FeatureBackbone


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook

        return np.asarray(Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False)))

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


#: Photo → (loader of an (H, W[, 3]) uint8 array, the ImageNet classes that are a right answer). Chosen so that
#: the right class is unambiguous; a network run with the wrong activation (Swish instead of ReLU6) gets
#: "combination lock" for the coffee, "stethoscope" for the cameraman and "mosque" for the rocket.
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], frozenset[str]]] = {
    "coffee": (_skimage("coffee"), frozenset({"espresso", "cup", "coffee mug"})),
    "chelsea": (_skimage("chelsea"), frozenset({"Egyptian cat", "tabby", "tiger cat"})),
    "rocket": (_skimage("rocket"), frozenset({"missile", "projectile", "space shuttle"})),
    "camera": (_skimage("camera"), frozenset({"tripod", "reflex camera"})),
    "grace_hopper": (_matplotlib("grace_hopper.jpg"), frozenset({"military uniform"})),
    "china": (_sklearn("china.jpg"), frozenset({"palace", "monastery", "bell cote", "pagoda", "castle"})),
}


def photo_uint8(name: str, size: int) -> torch.Tensor:
    """The photo centre-cropped to a square and resized to ``size`` with PIL bicubic (the usual ImageNet
    evaluation preparation), as a (1, 3, size, size) uint8 tensor; grayscale photos are repeated to 3 channels."""
    array = PHOTOS[name][0]()
    image = Image.fromarray(array).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, S, S)


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in the standard (sorted synset) order, as torchvision ships them."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


class PretrainedPhotoTests:
    """Shared checks for a pretrained ImageNet backbone; a test module subclasses it and defines the fixture
    ``pretrained_backbone`` (skipping with a one-line reason where the weights file is absent) and the hooks.

    Attributes:
        input_size: The resolution the network was trained at; photos are prepared at it.
    """

    input_size: int = 224

    def class_names(self, backbone: FeatureBackbone) -> list[str] | None:
        """Names of the logits' classes in order, or None where no verified label map is at hand."""
        return imagenet_class_names()

    def head(self, backbone: FeatureBackbone, features: torch.Tensor) -> torch.Tensor:
        """The backbone's classification head applied to (B, D) features → (B, K) logits."""
        raise NotImplementedError

    def reference_logits(self, backbone: FeatureBackbone, images: torch.Tensor) -> torch.Tensor:
        """The original network's own classifier forward on uint8 images (no micro-batching, no memory-format
        tricks), to which the backbone's logits path must be equal."""
        raise NotImplementedError

    @pytest.mark.parametrize("photo", sorted(PHOTOS))
    def test_recognizes_real_photo(self, pretrained_backbone, photo):
        """Top-1 ImageNet class through the logits path (the `is` metric's) is a right one."""
        names = self.class_names(pretrained_backbone)
        if names is None:
            pytest.skip(f"{pretrained_backbone.registry_name}: no verified label map for its logits")
        logits = pretrained_backbone.logits(photo_uint8(photo, self.input_size))  # (1, K)
        probs = logits.double().softmax(-1)[0]
        top = [names[i] for i in probs.topk(3).indices.tolist()]
        assert top[0] in PHOTOS[photo][1], f"{photo}: top-3 {top}, expected one of {sorted(PHOTOS[photo][1])}"

    def test_features_are_the_logits_penultimate_activations(self, pretrained_backbone):
        """features_and_logits = (forward, head(forward)), and the logits equal the original network's forward."""
        images = torch.cat([photo_uint8(p, self.input_size) for p in ("coffee", "chelsea", "camera")])  # (3, 3, S, S)
        features, logits = pretrained_backbone.features_and_logits(images)
        torch.testing.assert_close(features, pretrained_backbone(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits, self.head(pretrained_backbone, features), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(logits, self.reference_logits(pretrained_backbone, images), rtol=1e-4, atol=1e-3)
