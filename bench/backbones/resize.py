"""The resize a backbone applies to uint8 images: one of a few named, recorded modes.

How images are resized before the feature network changes FID by several points (Parmar et al., "On Aliased
Resizing and Surprising Subtleties in GAN Evaluation", CVPR 2022), so the mode is a protocol choice, selectable
with ``--resize`` / ``eval.resize`` and recorded in every result row as ``<mode>-<size>``:

* ``tf1-bilinear`` — TensorFlow 1.x ``tf.image.resize_bilinear`` (``align_corners=False``, no antialiasing), as
  ported by torch-fidelity (``interpolate_bilinear_2d_like_tensorflow1x``). The paper standard with Inception
  (the original TF FID/IS code); torch-fidelity's and ``inception-v3-compat``'s default.
* ``bilinear`` — ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, no antialiasing.
  PyTorch's own bilinear; differs from ``tf1-bilinear`` by the half-pixel offset of the sampling grid.
* ``clean`` — clean-fid's resize: PIL ``Image.BICUBIC`` on each channel as a float32 image (PIL mode ``"F"``,
  antialiased when downsampling), clipped to 0..255, no quantization back to uint8 afterwards.

Every mode returns float32 images with values on the 0..255 scale, so each backbone then applies its own
normalization unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

#: Name → what it is, for ``--help`` and error messages.
RESIZE_MODES: dict[str, str] = {
    "tf1-bilinear": "TF1 resize_bilinear as ported by torch-fidelity (the Inception paper standard)",
    "bilinear": "torch bilinear, align_corners=False, no antialias",
    "clean": "clean-fid: PIL bicubic per channel in float32, antialiased, not re-quantized",
}


def _tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:  # (B, C, H, W) float -> (B, C, S, S)
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)


def _torch_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:  # (B, C, H, W) float -> (B, C, S, S)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _pil_bicubic(x: torch.Tensor, size: int) -> torch.Tensor:  # (B, C, H, W) float 0..255 -> (B, C, S, S)
    # clean-fid's `make_resizer("PIL", False, "bicubic", ...)`: one float32 PIL image per channel. No torch op
    # reproduces PIL's antialiased bicubic filter exactly, so this goes through PIL (on CPU).
    from PIL import Image

    arr = x.detach().cpu().numpy().astype(np.float32)
    out = np.empty((*arr.shape[:2], size, size), dtype=np.float32)
    for b in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(arr[b, c], mode="F")
            out[b, c] = np.asarray(img.resize((size, size), resample=Image.BICUBIC), dtype=np.float32)
    return torch.from_numpy(out.clip(0, 255)).to(x.device)


_RESIZERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "tf1-bilinear": _tf1_bilinear,
    "bilinear": _torch_bilinear,
    "clean": _pil_bicubic,
}


def check_resize_mode(mode: str) -> None:
    """Raises ValueError naming the accepted modes unless ``mode`` is one of them."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; accepted: {', '.join(RESIZE_MODES)}")


def resize_uint8(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resizes uint8 images to ``size``×``size`` with a named mode.

    Args:
        images: (B, C, H, W) uint8.
        size: Output side S.
        mode: One of :data:`RESIZE_MODES`.

    Returns:
        (B, C, S, S) float32 on the 0..255 scale. Images already S×S are returned as float unchanged, in every
        mode.
    """
    check_resize_mode(mode)
    x = images.float()
    if x.shape[-2:] == (size, size):
        return x
    return _RESIZERS[mode](x, size)


def resize_label(mode: str, size: int) -> str:
    """The string recorded in result rows, e.g. ``"tf1-bilinear-299"`` (``bilinear`` gives ``"bilinear-<size>"``, the
    label rows had before modes were selectable, so cached features and published rows keep their keys)."""
    return f"{mode}-{size}"
