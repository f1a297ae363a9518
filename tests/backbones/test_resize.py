"""bench.backbones.resize: each named mode equals its reference implementation; backbones record the mode."""

import numpy as np
import pytest
import torch
from cleanfid.resize import make_resizer
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from bench.backbones import BACKBONES
from bench.backbones.resize import RESIZE_MODES, resize_uint8


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:  # uint8 (B, C, H, W)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [64, 20])  # up- and (antialiased) downsampling
def test_clean_equals_clean_fid_resizer(size):
    images = _images((2, 3, 28, 28))
    ours = resize_uint8(images, size, "clean")
    resizer = make_resizer("PIL", False, "bicubic", (size, size))  # clean-fid's own, HWC numpy per image
    ref = np.stack([resizer(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1) for img in images])
    assert ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_tf1_bilinear_equals_torch_fidelity():
    images = _images((2, 3, 32, 32))
    ref = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    assert torch.equal(resize_uint8(images, 299, "tf1-bilinear"), ref)


def test_bilinear_equals_torch_interpolate():
    images = _images((2, 1, 16, 16))
    ref = torch.nn.functional.interpolate(images.float(), size=(40, 40), mode="bilinear", align_corners=False)
    assert torch.equal(resize_uint8(images, 40, "bilinear"), ref)


@pytest.mark.parametrize("mode", list(RESIZE_MODES))
def test_same_size_is_identity(mode):
    images = _images((2, 3, 24, 24))
    assert torch.equal(resize_uint8(images, 24, mode), images.float())


def test_modes_differ_when_upsampling():
    """The reason the mode is recorded: the three give different pixels from the same uint8 image."""
    images = _images((1, 3, 28, 28))
    out = {mode: resize_uint8(images, 64, mode) for mode in RESIZE_MODES}
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(out[a], out[b], atol=0.5), f"{a} and {b} agree"


def test_unknown_mode_lists_accepted():
    with pytest.raises(ValueError, match="accepted: tf1-bilinear, bilinear, clean"):
        resize_uint8(_images((1, 1, 8, 8)), 16, "lanczos")


@pytest.mark.parametrize("mode", list(RESIZE_MODES))
def test_efficientnet_records_and_applies_mode(mode):
    backbone = BACKBONES.get("efficientnet-lite0")(size=64, resize_mode=mode)
    assert backbone.resize == f"{mode}-64"
    images = _images((2, 1, 28, 28))
    expected = resize_uint8(images, 64, mode).expand(-1, 3, -1, -1)  # 0..255 scale
    expected = (expected - 127.0) / 128.0  # the EfficientNet-Lite normalization its weights were trained with
    assert torch.allclose(backbone.preprocess(images), expected)


def test_efficientnet_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown resize mode"):
        BACKBONES.get("efficientnet-lite0")(size=64, resize_mode="area")
