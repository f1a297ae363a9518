"""bench.metrics.reconstruction: MSE, PSNR and SSIM against scikit-image on random images in [0, 1]."""

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from bench.metrics.base import MetricContext
from bench.metrics.reconstruction import MSE, PSNR, SSIM


def image_pair(seed, shape, noise=0.1, smooth=True):
    """Target in [0, 1] and a noisy reconstruction of it, clipped to [0, 1], float64."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64)
    if smooth:  # some spatial structure (and border effects), as in real images
        target = 0.5 * target + 0.5 * torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1)
    preds = (target + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return preds, target


def compute(metric, preds, target, batch_size=None):
    for p, t in zip(preds.split(batch_size or len(preds)), target.split(batch_size or len(target))):
        metric.update(p, t)
    return metric.compute().item()


SHAPES = [(5, 1, 16, 16), (4, 3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES)
def test_mse_matches_skimage(shape):
    """MSE over all pixels of all images equals skimage's mean_squared_error."""
    preds, target = image_pair(0, shape)
    expected = mean_squared_error(target.numpy(), preds.numpy())
    assert compute(MSE(), preds, target) == pytest.approx(expected, rel=1e-5)
    assert compute(MSE(), preds, target, batch_size=2) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_psnr_is_per_image_mean_of_skimage(shape):
    """PSNR is skimage's peak_signal_noise_ratio (data_range=1) per image, averaged over images."""
    # Different noise levels per image make the per-image mean differ from the PSNR of the pooled MSE.
    preds, target = image_pair(1, shape)
    scale = torch.linspace(0.2, 2.0, shape[0], dtype=torch.float64).view(-1, 1, 1, 1)
    preds = (target + (preds - target) * scale).clamp(0, 1)
    per_image = [peak_signal_noise_ratio(t.numpy(), p.numpy(), data_range=1.0) for p, t in zip(preds, target)]
    expected = float(np.mean(per_image))
    pooled = peak_signal_noise_ratio(target.numpy(), preds.numpy(), data_range=1.0)
    assert abs(expected - pooled) > 0.1  # the test can tell the two protocols apart
    assert compute(PSNR(), preds, target) == pytest.approx(expected, rel=1e-4)
    assert compute(PSNR(), preds, target, batch_size=1) == pytest.approx(expected, rel=1e-4)


def skimage_ssim(preds, target):
    """Mean over images of skimage's SSIM with the Gaussian-window settings of Wang et al. (2004)."""
    return float(
        np.mean(
            [
                structural_similarity(
                    t.numpy(), p.numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                    data_range=1.0, channel_axis=0,
                )
                for p, t in zip(preds, target)
            ]
        )
    )


@pytest.mark.parametrize("shape", [(8, 1, 64, 64), (4, 3, 64, 64)])
def test_ssim_close_to_skimage(shape):
    """SSIM agrees with skimage's to 1e-3 on 64x64 i.i.d. random images.

    Not exactly: skimage averages the SSIM map only over pixels whose 11x11 window lies inside the image (it crops
    5 px at every border), while torchmetrics reflect-pads the image and averages the whole map, borders included
    (29% of the pixels of a 64x64 image, half of a 32x32 one). On i.i.d. noise images the border values have the
    same statistics as the interior ones, so the two means differ by sampling noise only (≤ 5e-4 at 64x64, up to
    2e-3 at 32x32); images with structure can differ by ~1e-2 (a convention, not an error). The next test checks
    the exact value on 16x16 and 32x32 images under torchmetrics' border convention.
    """
    preds, target = image_pair(2, shape, smooth=False)
    value = compute(SSIM(), preds, target)
    assert 0.2 < value < 0.99
    assert value == pytest.approx(skimage_ssim(preds, target), abs=1e-3)


@pytest.mark.parametrize("shape", [(4, 1, 16, 16), (2, 3, 32, 32)])
def test_ssim_equals_skimage_map_with_reflect_padding(shape):
    """Exactly (1e-5): the mean of skimage's full SSIM map computed on the images reflect-padded by 5 px (the
    torchmetrics border convention), over the original pixels."""
    preds, target = image_pair(3, shape)
    pad = 5
    expected = []
    for p, t in zip(preds.numpy(), target.numpy()):
        widths = ((0, 0), (pad, pad), (pad, pad))
        _, full = structural_similarity(
            np.pad(t, widths, mode="reflect"), np.pad(p, widths, mode="reflect"), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0, channel_axis=0, full=True,
        )
        expected.append(full[:, pad:-pad, pad:-pad].mean())
    assert compute(SSIM(), preds, target) == pytest.approx(float(np.mean(expected)), abs=1e-5)


def test_ssim_identical_images_is_one():
    preds, target = image_pair(4, (2, 1, 16, 16))
    assert compute(SSIM(), target, target) == pytest.approx(1.0, abs=1e-6)


def test_ssim_protocol_records_the_window_used():
    """torchmetrics' Gaussian window is int(3.5*sigma+0.5)*2+1 = 11 px for sigma=1.5; the protocol says so."""
    metric = SSIM()
    assert metric.sigma == (1.5, 1.5) or metric.sigma == 1.5
    assert "window=11" in metric.protocol() and "sigma=1.5" in metric.protocol()


def test_ssim_runs_on_8x8_images():
    """The 8x8 digits size works end to end (values in (0, 1]): the 5-px reflection padding fits."""
    preds, target = image_pair(6, (4, 1, 8, 8))
    value = compute(SSIM.build(MetricContext(image_shape=(1, 8, 8))), preds, target)
    assert 0 < value <= 1


def test_declarations():
    """MSE is lower-is-better; PSNR and SSIM higher-is-better; all are reconstruction metrics."""
    assert MSE.higher_is_better is False and PSNR.higher_is_better is True and SSIM.higher_is_better is True
    assert {MSE.input_kind, PSNR.input_kind, SSIM.input_kind} == {"reconstruction"}
