"""Reconstruction metrics on images in [0, 1], from torchmetrics (registered with the suite's protocol)."""

from __future__ import annotations

from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.regression import MeanSquaredError

from bench.metrics.base import BenchMetric, MetricContext
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
    """SSIM with a Gaussian window (σ=1.5, 11 px, or the largest odd size that fits smaller images); higher is better."""

    input_kind = "reconstruction"
    higher_is_better = True

    def __init__(self, kernel_size: int = 11, **kwargs) -> None:
        super().__init__(data_range=1.0, kernel_size=kernel_size, sigma=1.5, **kwargs)
        self.window = kernel_size

    @classmethod
    def build(cls, ctx: MetricContext) -> SSIM:
        side = min(ctx.image_shape[1:])
        return cls(kernel_size=min(11, side if side % 2 else side - 1))

    def protocol(self) -> str:
        return f"gaussian,sigma=1.5,kernel={self.window},data_range=1"
