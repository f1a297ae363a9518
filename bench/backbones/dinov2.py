"""DINOv2 ViT-S/14 (Oquab et al., 2023) as a feature backbone: the encoder of FD_DINOv2 (Stein et al., 2023,
"Exposing flaws of generative model evaluation metrics", the ``dgm-eval`` package).

Registered as ``dinov2-vits14``. Features are the 384-d CLS token after the final LayerNorm, what torch.hub's
``dinov2_vits14`` returns from ``forward`` (``head(x_norm_clstoken)``, ``head`` = identity) and hence what
dgm-eval's ``DINOv2Encoder`` gives (dgm-eval's default architecture is ``vitl14``; this is ``--arch vits14``).

The network is transformers' ``Dinov2Model`` built from a :class:`~transformers.Dinov2Config` written here (never
fetched from the Hub), with one change: the position embeddings (trained on a 37×37 grid, 518 px) are resized to
the 16×16 grid of 224 px input **as torch.hub's DINOv2 does it** (bicubic with ``scale_factor=(16 + 0.1) / 37``,
no antialiasing), not as the installed transformers does it (``size=16``: the grid is sampled at other points,
up to 0.22 cell apart at the border; on a smooth random 37×37 field the resized embeddings differ by about 10% of
their norm, so the features would not be dgm-eval's; tested).

Weights: a local file only, never downloaded: the ``weights_path`` argument (``--backbone-weights``), else
``$BENCH_DINOV2_VITS14_WEIGHTS``. Accepted layouts, detected from the keys and mapped by
:func:`to_model_layout`:

* torch.hub's ``dinov2_vits14_pretrain.pth`` (keys ``pos_embed``, ``blocks.N.attn.qkv.weight``, ...; the fused
  ``qkv`` projection is split into query, key and value);
* the transformers state dict of ``facebook/dinov2-small`` (``model.safetensors`` or ``pytorch_model.bin``; keys
  ``embeddings.position_embeddings``, ``encoder.layer.N.attention.attention.query.weight``, ...), or the state dict
  of a ``Dinov2Model`` of transformers 5 (``...attention.q_proj.weight``), whichever transformers is installed.

Files are read by :mod:`bench.weights_files` (``torch.load(weights_only=True)`` or safetensors) and loaded
strictly; the one tolerated gap is an absent ``mask_token`` (used only by masked-image training, never by this
forward; torch.hub itself loads these files with ``strict=False``), which is then zeros, its initial value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.backbones.base import BackboneWeightsError, FeatureBackbone, check_uint8_images
from bench.backbones.registry import BACKBONES
from bench.backbones.resize import RESIZE_MODES, resize_label, resize_uint8
from bench.hashing import file_sha256
from bench.weights_files import file_problem, load_into, read_state_dict

if TYPE_CHECKING:
    from transformers import Dinov2Config, Dinov2Model

NAME = "dinov2-vits14"
WEIGHTS_ENV = "BENCH_DINOV2_VITS14_WEIGHTS"
#: torch.hub's file and where torch.hub downloads it (``dinov2/hub/backbones.py``).
HUB_FILE = "dinov2_vits14_pretrain.pth"
HUB_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/{HUB_FILE}"
#: The same weights converted for transformers.
HF_URL = "https://huggingface.co/facebook/dinov2-small/resolve/main/model.safetensors"
#: dgm-eval's normalization (ImageNet mean / std, on the 0..1 scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 14
#: Resolution the weights were trained at: 37×37 position embeddings (+ CLS).
PRETRAIN_SIZE = 518
#: dgm-eval's default resize: ``torchvision.transforms.Resize((224, 224), BICUBIC)`` on the PIL image, i.e. PIL's
#: antialiased bicubic on uint8, re-quantized to uint8. The other modes are :data:`bench.backbones.resize.RESIZE_MODES`
#: (``clean`` is dgm-eval's ``--clean_resize``: PIL bicubic per channel in float32, not re-quantized).
DINOV2_RESIZE_MODES: dict[str, str] = {
    "bicubic": "PIL bicubic on uint8 (torchvision Resize on a PIL image), dgm-eval's default",
    **RESIZE_MODES,
}

_MISSING_FIX = (
    f"download {HUB_URL} (torch.hub's dinov2_vits14 weights) or {HF_URL} (facebook/dinov2-small for transformers; "
    f"its pytorch_model.bin also works) on a machine with network, then set {WEIGHTS_ENV}=/path/to/{HUB_FILE} or "
    "pass --backbone-weights FILE"
)
_LAYOUT_HINT = (
    f"it must be the state dict of DINOv2 ViT-S/14: torch.hub's {HUB_FILE} or transformers' facebook/dinov2-small "
    "(with registers, other sizes and classifier checkpoints are not accepted)"
)


def dinov2_vits14_config() -> Dinov2Config:
    """ViT-S/14 as torch.hub's ``dinov2_vits14`` builds it: width 384, 12 layers, 6 heads, MLP ratio 4 (exact GELU),
    LayerScale, LayerNorm eps 1e-6, qkv bias, no registers, no SwiGLU, no dropout, 37×37 position embeddings."""
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-6,
        image_size=PRETRAIN_SIZE,
        patch_size=PATCH_SIZE,
        num_channels=3,
        qkv_bias=True,
        layerscale_value=1.0,
        drop_path_rate=0.0,
        use_swiglu_ffn=False,
        use_mask_token=True,
    )


def hub_interpolate_pos_encoding(pos_embed: torch.Tensor, height: int, width: int, patch_size: int) -> torch.Tensor:
    """torch.hub DINOv2's ``interpolate_pos_encoding``: the trained M×M grid resized bicubically (no antialias) with
    ``scale_factor = (side // patch + 0.1) / M``, the offset the original code adds (facebookresearch/dino#8).

    Args:
        pos_embed: (1, 1 + M*M, D) position embeddings, CLS first.
        height, width: Input image size in pixels.
        patch_size: Patch side in pixels.

    Returns:
        (1, 1 + h*w, D) with h, w = height // patch_size, width // patch_size; ``pos_embed`` itself when the grid
        already fits (as the original: same token count and a square input).
    """
    n = pos_embed.shape[1] - 1
    h0, w0 = height // patch_size, width // patch_size
    if n == h0 * w0 and height == width:
        return pos_embed
    m, dim = int(math.sqrt(n)), pos_embed.shape[-1]
    grid = pos_embed[:, 1:].float().reshape(1, m, m, dim).permute(0, 3, 1, 2)  # (1, D, M, M)
    grid = F.interpolate(grid, scale_factor=((h0 + 0.1) / m, (w0 + 0.1) / m), mode="bicubic", align_corners=False)
    if grid.shape[-2:] != (h0, w0):
        raise ValueError(f"position grid resized to {tuple(grid.shape[-2:])}, expected {(h0, w0)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)  # (1, h*w, D)
    return torch.cat((pos_embed[:, :1].float(), grid), dim=1).to(pos_embed.dtype)


def _make_hub_pos_embeddings() -> type:
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    class HubPosEmbeddings(Dinov2Embeddings):
        """transformers' DINOv2 embeddings with torch.hub's resizing of the position embeddings."""

        def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
            return hub_interpolate_pos_encoding(self.position_embeddings, height, width, self.patch_size)

    HubPosEmbeddings.__module__, HubPosEmbeddings.__qualname__ = __name__, "HubPosEmbeddings"
    return HubPosEmbeddings


def _hub_pos_embeddings_class() -> type:
    """``HubPosEmbeddings``, a subclass of transformers' ``Dinov2Embeddings``, built on first use so that importing
    the backbones does not import transformers (seconds); kept as a module attribute, so it stays picklable."""
    cls = globals().get("HubPosEmbeddings")
    if cls is None:
        cls = globals()["HubPosEmbeddings"] = _make_hub_pos_embeddings()
    return cls


def __getattr__(name: str) -> Any:  # PEP 562: `bench.backbones.dinov2.HubPosEmbeddings` (e.g. for unpickling)
    if name == "HubPosEmbeddings":
        return _hub_pos_embeddings_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- weights layouts ----

_HUB_GLOBAL = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "mask_token": "embeddings.mask_token",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
_HUB_BLOCK = {  # torch.hub block key suffix -> transformers (as published) layer key suffix
    "norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
}
_HUB_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+?)(?:\.(weight|bias))?$")
#: Attention names of the published transformers checkpoints -> those of transformers 5's Dinov2Model.
_ATTENTION_RENAMES = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
)


def is_hub_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` has torch.hub's key names (``pos_embed``, ``blocks.N...``)."""
    return any(k in _HUB_GLOBAL or k.startswith("blocks.") for k in state)


def hub_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch.hub DINOv2 keys -> the keys of the published transformers checkpoints (as transformers' own
    ``convert_dinov2_to_hf.py`` maps them): ``blocks.N.attn.qkv`` is split in three along the output dimension
    (query, key, value), ``lsK.gamma`` -> ``layer_scaleK.lambda1``, ``norm`` -> ``layernorm``, ...

    Keys it does not know (or a ``qkv`` tensor that cannot be split in three) are kept as they are, so that the
    strict load names them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _HUB_GLOBAL:
            out[_HUB_GLOBAL[key]] = value
            continue
        match = _HUB_BLOCK_KEY.match(key)
        if match is None:
            out[key] = value
            continue
        i, name, kind = match.groups()
        prefix = f"encoder.layer.{i}."
        suffix = f".{kind}" if kind else ""
        if name == "attn.qkv" and kind and value.ndim >= 1 and value.shape[0] % 3 == 0:
            q, k, v = value.chunk(3, dim=0)  # (3D, D) -> 3 x (D, D); (3D,) -> 3 x (D,)
            for part, tensor in zip(("query", "key", "value"), (q, k, v)):
                out[f"{prefix}attention.attention.{part}{suffix}"] = tensor.contiguous()
        elif name in _HUB_BLOCK:
            out[f"{prefix}{_HUB_BLOCK[name]}{suffix}"] = value
        else:
            out[key] = value
    return out


def to_model_layout(state: Mapping[str, torch.Tensor], model_keys: Collection[str]) -> dict[str, torch.Tensor]:
    """Any accepted layout (torch.hub, published transformers, transformers 5) -> the installed ``Dinov2Model``'s
    keys (``model_keys``), plus a zero ``mask_token`` when the file has none (see the module docstring)."""
    out = hub_to_transformers(state) if is_hub_layout(state) else dict(state)
    to_v5 = any(".attention.q_proj." in k for k in model_keys)
    renames = _ATTENTION_RENAMES if to_v5 else tuple((new, old) for old, new in _ATTENTION_RENAMES)
    renamed = {}
    for key, value in out.items():
        for old, new in renames:
            if key.startswith("encoder.layer.") and old in key:
                key = key.replace(old, new)
                break
        renamed[key] = value
    mask = "embeddings.mask_token"
    cls = renamed.get("embeddings.cls_token")
    if mask in model_keys and mask not in renamed and cls is not None and cls.ndim == 3:
        renamed[mask] = torch.zeros(1, cls.shape[-1], dtype=cls.dtype)
    return renamed


def resolve_weights_path(weights_path: str | None = None) -> str:
    """The weights file: ``weights_path``, else ``$BENCH_DINOV2_VITS14_WEIGHTS``; never a download.

    Raises:
        BackboneWeightsError: None given, or the path is not a regular file; one line saying what to fetch.
    """
    path = weights_path or os.environ.get(WEIGHTS_ENV) or None
    if path is None:
        raise BackboneWeightsError(f"{NAME}: no weights file given; {_MISSING_FIX}")
    problem = file_problem(path)
    if problem is not None:
        raise BackboneWeightsError(f"{NAME}: weights file {path} {problem}; {_MISSING_FIX}")
    return str(path)


def _empty_network() -> Dinov2Model:
    """The network with uninitialized tensors (the strict load fills every one): its random init would take
    seconds on CPU, only to be overwritten."""
    from transformers import Dinov2Model

    config, embeddings_class = dinov2_vits14_config(), _hub_pos_embeddings_class()
    with torch.device("meta"):
        net = Dinov2Model(config)
        net.embeddings = embeddings_class(config)
    if next(net.buffers(), None) is not None:  # a non-persistent buffer would not come from the file: real init
        net = Dinov2Model(config)
        net.embeddings = embeddings_class(config)
        return net
    return net.to_empty(device="cpu")


def pil_bicubic_uint8(images: torch.Tensor, size: int) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, C, S, S)
    """``torchvision.transforms.Resize((size, size), BICUBIC)`` applied to PIL images, as dgm-eval does: PIL's
    antialiased bicubic on 8-bit images, re-quantized to uint8 (returned as float32 on the 0..255 scale).

    A grayscale image is resized as mode ``L``: PIL resamples each band of an RGB image alike, so this equals
    converting it to RGB first (dgm-eval's ``convert('RGB')``).
    """
    from PIL import Image

    if images.shape[-2:] == (size, size):
        return images.float()
    arr = images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C) uint8
    out = np.empty((arr.shape[0], size, size, arr.shape[-1]), dtype=np.uint8)
    for b in range(arr.shape[0]):
        image = Image.fromarray(arr[b, :, :, 0] if arr.shape[-1] == 1 else arr[b])
        out[b] = np.asarray(image.resize((size, size), resample=Image.BICUBIC)).reshape(size, size, -1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().to(images.device)  # (B, C, S, S)


@BACKBONES.register(NAME)
class DINOv2ViTS14(FeatureBackbone):
    """DINOv2 ViT-S/14: the 384-d final-LayerNorm CLS token, as torch.hub's ``dinov2_vits14`` / dgm-eval.

    Preprocessing, as dgm-eval's ``DINOv2Encoder.transform``: grayscale repeated to 3 channels; resized (squashed)
    to ``size``×``size`` with ``resize_mode`` (default ``bicubic``: PIL bicubic on uint8, see
    :func:`pil_bicubic_uint8`; ``clean`` = dgm-eval's ``--clean_resize``); /255; ImageNet mean/std. Recorded as
    ``resize = "<mode>-<size>"``, e.g. ``"bicubic-224"``.

    Speed: about 0.4 s per 224 px image on one CPU thread (batch 8; 0.35-0.6 s measured on a shared 2-core
    machine); the bicubic resize adds about 3 ms per image.

    Args:
        weights_path: State-dict file; default ``$BENCH_DINOV2_VITS14_WEIGHTS``. See the module docstring.
        size: Input side, a multiple of 14 (224, dgm-eval's, is the default).
        resize_mode: One of :data:`DINOV2_RESIZE_MODES`.

    Raises:
        BackboneWeightsError: The weights file is missing, unreadable, or not DINOv2 ViT-S/14 in an accepted
            layout; one line naming the file. ValueError: Bad ``size`` or ``resize_mode``.
    """

    num_features = 384
    forward_version = "1"

    def __init__(self, weights_path: str | None = None, size: int = 224, resize_mode: str = "bicubic") -> None:
        super().__init__()
        if resize_mode not in DINOV2_RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}; accepted: {', '.join(DINOV2_RESIZE_MODES)}")
        if size <= 0 or size % PATCH_SIZE:
            raise ValueError(f"{NAME}: size must be a positive multiple of the patch size {PATCH_SIZE}; got {size}")
        path = resolve_weights_path(weights_path)
        state = read_state_dict(path, NAME, hint=_LAYOUT_HINT)
        net = _empty_network()
        state = to_model_layout(state, net.state_dict().keys())
        load_into(net, state, path, NAME, target="DINOv2 ViT-S/14", hint=_LAYOUT_HINT)
        self.net = net
        self.weights_sha256 = file_sha256(os.path.abspath(path))
        self.size = size
        self.resize_mode = resize_mode
        self.resize = resize_label(resize_mode, size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 3, S, S) float32
        """dgm-eval's transform on a uint8 batch (see the class docstring)."""
        check_uint8_images(images)
        if self.resize_mode == "bicubic":
            x = pil_bicubic_uint8(images, self.size)  # (B, C, S, S) float 0..255
        else:
            x = resize_uint8(images, self.size, self.resize_mode)  # (B, C, S, S) float 0..255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x.to(self.mean.device) / 255.0  # ToTensor's scale
        return (x - self.mean) / self.std  # (B, 3, S, S)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 384)
        return self.net(pixel_values=self.preprocess(images)).pooler_output.float()  # final-LN CLS token
