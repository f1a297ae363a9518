"""Reconstruction metrics on images in [0, 1], from torchmetrics (registered with the suite's protocol)."""

from __future__ import annotations

from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.regression import MeanSquaredError

from bench.metrics.base import BenchMetric
from bench.metrics.registry import METRICS


@METRICS.register("mse")
class MSE(BenchMetric, MeanSquaredError):
    """Mean squared error over all pixels, images in [0, 1]; lower is better."""

    input_kind = "reconstruction"
    higher_is_better = False

    def update(self, preds, target) -> None:  # (N, C, H, W) each
        super().update(preds.flatten(), target.flatten())

    def protocol(self) -> str:
        return "range=[0,1],mean over pixels"


@METRICS.register("psnr")
class PSNR(BenchMetric, PeakSignalNoiseRatio):
    """PSNR in dB, computed per image and averaged over images (data range 1); higher is better."""

    input_kind = "reconstruction"
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean", **kwargs)

    def protocol(self) -> str:
        return "data_range=1,per-image mean"


@METRICS.register("ssim")
class SSIM(BenchMetric, StructuralSimilarityIndexMeasure):
    """SSIM with torchmetrics' Gaussian window (σ=1.5, 11×11), data range 1; higher is better.

    Borders are reflection-padded and included in the mean (scikit-image instead drops a 5-px border strip,
    so the two differ slightly on small images; see tests/metrics/test_reconstruction.py).
    """

    input_kind = "reconstruction"
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(data_range=1.0, gaussian_kernel=True, sigma=1.5, **kwargs)

    def protocol(self) -> str:
        return "gaussian,sigma=1.5,window=11,reflect-padded borders,data_range=1"
