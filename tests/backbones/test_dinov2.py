"""bench.backbones.dinov2: DINOv2 ViT-S/14 (dgm-eval's FD_DINOv2 encoder) from random-init local weights files.

References, none of them this module's code: transformers' stock ``Dinov2Model`` (the features), timm's
``VisionTransformer`` (an independent ViT with torch.hub's key names, for the torch.hub layout), transformers'
own ``from_pretrained`` key conversion (for the published facebook/dinov2-small layout), dgm-eval's transform
(torchvision on PIL images) and a transcription of torch.hub DINOv2's position-embedding resize. Nothing touches
the network; the real weights are never needed.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as TF
from PIL import Image
from transformers import Dinov2Model

from bench.backbones.base import BackboneWeightsError, FeatureBackbone
from bench.backbones.dinov2 import (
    HUB_FILE,
    HUB_URL,
    NAME,
    WEIGHTS_ENV,
    DINOv2ViTS14,
    dinov2_vits14_config,
    hub_to_transformers,
    to_model_layout,
)
from bench.backbones.registry import BACKBONES

MEAN = np.array([0.485, 0.456, 0.406])  # dgm-eval's constants, as it writes them
STD = np.array([0.229, 0.224, 0.225])


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:  # uint8 (B, C, H, W)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _random_state(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of these shapes: LayerNorm scales and LayerScale about 1, everything else about 0, none at
    an initial value (LayerNorm 1/0, LayerScale 1, zero biases), so that a mis-mapped key cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    ones = ("norm1.weight", "norm2.weight", "norm.weight", "layernorm.weight", "gamma", "lambda1")
    return {k: float(k.endswith(ones)) + 0.02 * torch.randn(shape, generator=gen) for k, shape in shapes.items()}


def _shapes(build) -> dict[str, torch.Size]:
    with torch.device("meta"):  # shapes only: a real random init of ViT-S takes seconds on CPU
        return {k: v.shape for k, v in build().state_dict().items()}


def hub_pos_embed_reference(pos_embed: torch.Tensor, w: int, h: int, patch_size: int = 14) -> torch.Tensor:
    """facebookresearch/dinov2 ``DinoVisionTransformer.interpolate_pos_encoding`` (2023), transcribed."""
    N = pos_embed.shape[1] - 1
    class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    w0, h0 = w // patch_size, h // patch_size
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = torch.nn.functional.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(float(w0 / math.sqrt(N)), float(h0 / math.sqrt(N))),
        mode="bicubic",
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def dgm_eval_transform(image: torch.Tensor, clean: bool = False) -> torch.Tensor:  # (C, H, W) uint8 -> (3, 224, 224)
    """dgm-eval's ``DINOv2Encoder.transform`` on the PIL image its data loader makes (``convert('RGB')``)."""
    array = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array).convert("RGB")
    if clean:  # dgm_eval.resizer.pil_resize
        x = np.array(pil).astype(np.float32)
        chans = [
            np.asarray(Image.fromarray(x[:, :, i], mode="F").resize((224, 224), resample=Image.BICUBIC)).clip(0, 255)
            for i in range(3)
        ]
        tensor = torch.from_numpy(np.stack(chans, axis=0)) / 255
    else:
        tensor = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])(pil)
    return TF.Normalize(MEAN, STD)(tensor)


def _loaded(build, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """``build()`` with uninitialized tensors, then ``state`` loaded strictly (a random init costs seconds)."""
    with torch.device("meta"):
        module = build()
    assert next(module.buffers(), None) is None
    module.to_empty(device="cpu").load_state_dict(state, strict=True)
    return module.eval()


@pytest.fixture(scope="module")
def hf_state() -> dict[str, torch.Tensor]:
    """A random ``Dinov2Model`` state dict (ViT-S/14 config, the installed transformers' key names)."""
    return _random_state(_shapes(lambda: Dinov2Model(dinov2_vits14_config())), seed=1)


@pytest.fixture(scope="module")
def hf_file(hf_state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dinov2") / "random-dinov2-small.bin"
    torch.save(hf_state, path)
    return path


@pytest.fixture(scope="module")
def backbone(hf_file) -> DINOv2ViTS14:
    return DINOv2ViTS14(weights_path=str(hf_file))


@pytest.fixture(scope="module")
def stock_224(hf_state) -> Dinov2Model:
    """Stock transformers Dinov2Model on a 16×16 grid holding torch.hub's resize of the 37×37 embeddings: at 224 px
    it interpolates nothing, so this is transformers' own forward, untouched."""
    config = dinov2_vits14_config()
    config.image_size = 224
    state = dict(hf_state)
    state["embeddings.position_embeddings"] = hub_pos_embed_reference(state["embeddings.position_embeddings"], 224, 224)
    return _loaded(lambda: Dinov2Model(config), state)


def test_registered_attributes_and_eval_mode(backbone, hf_file):
    """Registered; sha256 of the file; resize label; 384-d; frozen and always in eval mode."""
    assert BACKBONES.get(NAME) is DINOv2ViTS14 and isinstance(backbone, FeatureBackbone)
    assert backbone.weights_sha256 == hashlib.sha256(hf_file.read_bytes()).hexdigest()
    assert backbone.resize == "bicubic-224" and backbone.num_features == 384 and backbone.forward_version == "1"
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())


def test_architecture_is_vit_s14():
    """ViT-S/14 as torch.hub builds it: 384 wide, 12 layers, 6 heads, MLP 1536, LayerScale, 37×37 grid, no
    registers."""
    cfg = dinov2_vits14_config()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.patch_size) == (384, 12, 6, 14)
    assert cfg.mlp_ratio == 4 and not cfg.use_swiglu_ffn and cfg.layer_norm_eps == 1e-6 and cfg.hidden_act == "gelu"
    assert not hasattr(cfg, "num_register_tokens") or not cfg.num_register_tokens
    with torch.device("meta"):
        model = Dinov2Model(cfg)
    assert model.embeddings.position_embeddings.shape == (1, 37 * 37 + 1, 384)
    assert model.encoder.layer[0].mlp.fc1.out_features == 1536
    assert sum(p.numel() for p in model.parameters()) == 22_056_576  # dinov2_vits14: 21M (+ mask token)


def test_features_equal_stock_transformers_dinov2(backbone, stock_224):
    """Features == stock Dinov2Model's pooler output (= final-LayerNorm CLS token) on the same preprocessed batch."""
    images = _images((2, 3, 224, 224), seed=0)
    out = backbone(images)
    with torch.inference_mode():
        ref = stock_224(pixel_values=backbone.preprocess(images))
    assert out.shape == (2, 384) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(ref.pooler_output, ref.last_hidden_state[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(out, ref.pooler_output, rtol=1e-5, atol=1e-5)


def test_position_resize_is_torch_hubs_not_transformers(backbone, hf_state):
    """At 224 px the 37×37 embeddings are resized as torch.hub does (scale 16.1/37), which is not what the installed
    transformers' own resize (size 16) gives: that one changes the features."""
    pos = backbone.net.embeddings.position_embeddings
    resized = backbone.net.embeddings.interpolate_pos_encoding(torch.zeros(1, 257, 384), 224, 224)
    torch.testing.assert_close(resized, hub_pos_embed_reference(pos, 224, 224), rtol=0, atol=1e-6)
    stock = _loaded(lambda: Dinov2Model(dinov2_vits14_config()), hf_state)  # 37×37 grid, transformers' resize
    images = _images((1, 3, 224, 224), seed=2)
    with torch.inference_mode():
        theirs = stock(pixel_values=backbone.preprocess(images)).pooler_output
    ours = backbone(images)
    assert (ours - theirs).norm() > 1e-3 * ours.norm()


def test_deterministic_and_batch_independent(backbone):
    images = _images((2, 3, 64, 48), seed=3)  # non-square: squashed to 224×224 as dgm-eval's Resize((224, 224))
    out = backbone(images)
    assert out.shape == (2, 384) and torch.isfinite(out).all() and not torch.allclose(out[0], out[1])
    single = backbone(images[1:])
    torch.testing.assert_close(single, out[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(backbone(images[1:]), single, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(2, 3, 40, 56), (2, 1, 32, 32), (1, 3, 224, 224), (1, 3, 300, 260)])
def test_preprocess_is_dgm_evals_transform(backbone, shape):
    """preprocess == dgm-eval's torchvision-on-PIL transform, for non-square, grayscale, native and larger inputs."""
    images = _images(shape, seed=sum(shape))
    ours = backbone.preprocess(images)
    ref = torch.stack([dgm_eval_transform(img) for img in images])
    assert ours.shape == (shape[0], 3, 224, 224)
    torch.testing.assert_close(ours, ref.float(), rtol=0, atol=1e-6)


def test_grayscale_equals_repeated_rgb(backbone):
    gray = _images((1, 1, 40, 40), seed=5)
    out = backbone(gray)
    assert out.shape == (1, 384) and torch.isfinite(out).all()
    torch.testing.assert_close(out, backbone(gray.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)  # batch-layout rounding: seen 2e-6 on a loaded 2-core run


def test_clean_resize_mode_is_dgm_evals_clean_resize(hf_file):
    clean = DINOv2ViTS14(weights_path=str(hf_file), resize_mode="clean")
    assert clean.resize == "clean-224"
    images = _images((2, 3, 40, 56), seed=6)
    ref = torch.stack([dgm_eval_transform(img, clean=True) for img in images])
    torch.testing.assert_close(clean.preprocess(images), ref.float(), rtol=0, atol=1e-6)


def test_bad_options_rejected(hf_file, backbone):
    with pytest.raises(ValueError, match="bicubic, tf1-bilinear, bilinear, clean"):
        DINOv2ViTS14(weights_path=str(hf_file), resize_mode="nearest")
    with pytest.raises(ValueError, match="multiple of the patch size 14"):
        DINOv2ViTS14(weights_path=str(hf_file), size=100)
    with pytest.raises(ValueError, match="uint8"):
        backbone(torch.rand(1, 3, 8, 8))


def test_torch_hub_layout_matches_timm_vit(tmp_path, backbone):
    """A ``dinov2_vits14_pretrain.pth``-style file (torch.hub's key names, taken from timm's ViT, which uses them)
    loads, and the features equal timm's ViT-S/14 forward (CLS after the final norm) with torch.hub's resize of
    the position embeddings."""
    timm = pytest.importorskip("timm")
    vit = partial(
        timm.models.vision_transformer.VisionTransformer, patch_size=14, embed_dim=384, depth=12, num_heads=6,
        mlp_ratio=4.0, qkv_bias=True, init_values=1.0, num_classes=0, global_pool="token",
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    state = _random_state(_shapes(lambda: vit(img_size=518)), seed=3)
    state["mask_token"] = torch.zeros(1, 384)
    path = tmp_path / HUB_FILE
    torch.save(state, path)
    hub = DINOv2ViTS14(weights_path=str(path))
    timm_state = {k: v for k, v in state.items() if k != "mask_token"}  # timm's ViT has no mask token
    timm_state["pos_embed"] = hub_pos_embed_reference(state["pos_embed"], 224, 224)
    reference = _loaded(lambda: vit(img_size=224), timm_state)
    images = _images((1, 3, 50, 50), seed=7)
    with torch.inference_mode():
        expected = reference(hub.preprocess(images))  # (1, 384)
    features = hub(images)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(features, backbone(images), rtol=1e-2)


def test_published_transformers_layout_as_from_pretrained_reads_it(tmp_path, hf_state, backbone):
    """facebook/dinov2-small's key names (``attention.attention.query``, ``attention.output.dense``) load into the
    same tensors as transformers' own ``from_pretrained`` of that checkpoint (which converts the names itself)."""
    from safetensors.torch import save_file

    old = {
        "attention.q_proj.": "attention.attention.query.", "attention.k_proj.": "attention.attention.key.",
        "attention.v_proj.": "attention.attention.value.", "attention.o_proj.": "attention.output.dense.",
    }
    published = {}
    for key, value in hf_state.items():
        for new, name in old.items():
            key = key.replace(new, name)
        published[key] = value.contiguous()
    folder = tmp_path / "dinov2-small"
    folder.mkdir()
    dinov2_vits14_config().save_pretrained(folder)
    save_file(published, folder / "model.safetensors")
    reference, info = Dinov2Model.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    loaded = DINOv2ViTS14(weights_path=str(folder / "model.safetensors"))
    expected = reference.state_dict()
    assert loaded.net.state_dict().keys() == expected.keys()
    for key, value in loaded.net.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert loaded.weights_sha256 != backbone.weights_sha256


def test_hub_to_transformers_splits_qkv_in_order():
    """``qkv`` rows [0, D) are the query, [D, 2D) the key, [2D, 3D) the value (transformers' conversion script)."""
    d = 4
    state = {
        "blocks.3.attn.qkv.weight": torch.arange(3 * d * d, dtype=torch.float32).reshape(3 * d, d),
        "blocks.3.attn.qkv.bias": torch.arange(3 * d, dtype=torch.float32),
        "blocks.3.ls2.gamma": torch.full((d,), 7.0),
        "blocks.3.attn.proj.weight": torch.ones(d, d),
        "pos_embed": torch.zeros(1, 5, d),
        "something.else": torch.ones(1),
    }
    out = hub_to_transformers(state)
    w, b = state["blocks.3.attn.qkv.weight"], state["blocks.3.attn.qkv.bias"]
    assert torch.equal(out["encoder.layer.3.attention.attention.query.weight"], w[:d])
    assert torch.equal(out["encoder.layer.3.attention.attention.key.weight"], w[d : 2 * d])
    assert torch.equal(out["encoder.layer.3.attention.attention.value.weight"], w[2 * d :])
    assert torch.equal(out["encoder.layer.3.attention.attention.value.bias"], b[2 * d :])
    assert torch.equal(out["encoder.layer.3.layer_scale2.lambda1"], state["blocks.3.ls2.gamma"])
    assert "encoder.layer.3.attention.output.dense.weight" in out and "embeddings.position_embeddings" in out
    assert "something.else" in out  # unknown keys stay, for the strict load to name


def test_absent_mask_token_is_zeros():
    """The mask token (unused by this forward) may be absent from a file; anything else may not."""
    keys = {"embeddings.cls_token", "embeddings.mask_token"}
    out = to_model_layout({"cls_token": torch.ones(1, 1, 6)}, keys)
    assert torch.equal(out["embeddings.mask_token"], torch.zeros(1, 6))
    assert "embeddings.mask_token" not in to_model_layout({"foo": torch.ones(1)}, keys)


def _one_line_error(**kwargs) -> str:
    with pytest.raises(BackboneWeightsError) as info:
        DINOv2ViTS14(**kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{NAME}: ")
    return message


def test_missing_weights_one_line(tmp_path, monkeypatch):
    """No file and no env var, or a path that does not exist: one line naming the env var, the file and its URL."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    for message in (_one_line_error(), _one_line_error(weights_path=str(tmp_path / "nope.pth"))):
        assert WEIGHTS_ENV in message and HUB_FILE in message and HUB_URL in message
        assert "facebook/dinov2-small" in message and "--backbone-weights" in message
    assert "does not exist" in _one_line_error(weights_path=str(tmp_path / "nope.pth"))
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "also-missing.pth"))
    assert "also-missing.pth does not exist" in _one_line_error()


def test_weights_from_env(hf_file, backbone, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(hf_file))
    from_env = DINOv2ViTS14()
    assert from_env.weights_sha256 == backbone.weights_sha256
    expected = backbone.net.state_dict()
    for key, value in from_env.net.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_wrong_or_corrupt_file_one_line(tmp_path, hf_state):
    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.ones(64, 3, 7, 7), "fc.weight": torch.ones(10, 64)}, wrong)
    message = _one_line_error(weights_path=str(wrong))
    assert "does not fit DINOv2 ViT-S/14" in message and "unexpected key(s) (conv1.weight" in message
    assert HUB_FILE in message and "facebook/dinov2-small" in message
    # ViT-B/14-like: right names, wrong widths.
    base = tmp_path / "vitb.pth"
    torch.save({k: torch.zeros(*(768 if s == 384 else s for s in v.shape)) for k, v in hf_state.items()}, base)
    assert "tensor(s) of another shape" in _one_line_error(weights_path=str(base))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02 not a torch file" * 10)
    assert "cannot be read" in _one_line_error(weights_path=str(corrupt))


def test_pickles_and_imports_lazily(backbone):
    """The network pickles (its embeddings class is a module attribute, built on first use), and importing the
    module does not import transformers (seconds at every ``bench`` start)."""
    embeddings = pickle.loads(pickle.dumps(backbone.net.embeddings))
    assert type(embeddings) is type(backbone.net.embeddings)
    torch.testing.assert_close(
        embeddings.interpolate_pos_encoding(torch.zeros(1, 257, 384), 224, 224),
        backbone.net.embeddings.interpolate_pos_encoding(torch.zeros(1, 257, 384), 224, 224), rtol=0, atol=0,
    )
    code = "import sys, bench.backbones.dinov2; print(sorted(m for m in sys.modules if m.startswith('transformers')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
