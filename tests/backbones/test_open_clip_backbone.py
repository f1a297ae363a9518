"""bench.backbones.open_clip_backbone: open_clip CLIP models loaded from local random-init weights files.

Nothing touches the network (tests/conftest.py sets HF offline; the Hub lookup is pointed at an empty cache).
The registered `clip-vit-b-32` is built once from a random-init ViT-B-32 state dict through the real loading path;
the other checks use a tiny open_clip architecture (added with ``open_clip.add_model_config``) to stay fast on CPU.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")

from bench.backbones import BACKBONES, BackboneWeightsError, FeatureBackbone  # noqa: E402
from bench.backbones.open_clip_backbone import (  # noqa: E402
    WEIGHTS_ENV,
    ClipViTB32,
    OpenCLIPBackbone,
    resolve_weights_path,
)
from bench.metrics.clip_score import CLIPScore, clip_score  # noqa: E402

TINY = "bench-test-tiny-clip"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}
LONG_CAPTION = " ".join(["word"] * 200)
HUB_REPO = "timm/vit_base_patch32_clip_224.openai"


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:  # uint8 (B, C, H, W)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny open_clip architecture's config (registered in open_clip) and a random-init state dict of it."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    torch.save(open_clip.create_model(TINY).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_weights) -> OpenCLIPBackbone:
    return OpenCLIPBackbone(str(tiny_weights), model_name=TINY, pretrained=None)


@pytest.fixture(scope="module")
def vit_b_32_weights(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A random-init ViT-B-32 state dict file (about 600 MB) and one of its tensors, to check the load."""
    path = tmp_path_factory.mktemp("vit-b-32") / "random-vit-b-32.bin"
    with torch.device("meta"):  # shapes only: open_clip's random init of 151M parameters takes seconds on CPU
        model = open_clip.model.CLIP(**open_clip.get_model_config("ViT-B-32"))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in shapes.items()}
    torch.save(state, path)
    return path, state["visual.proj"].clone()


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    """Any Hub lookup sees an empty cache in offline mode (never a real download, never the user's cache)."""
    import huggingface_hub

    real = huggingface_hub.hf_hub_download

    def offline_download(*args, **kwargs):
        assert huggingface_hub.constants.HF_HUB_OFFLINE
        return real(*args, **{**kwargs, "cache_dir": kwargs.get("cache_dir") or str(tmp_path / "hf-cache")})

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_download)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


def test_registered_vit_b_32_from_local_file(vit_b_32_weights):
    """`clip-vit-b-32` loads a ViT-B-32 state dict via torch.load(weights_only=True): sha256, resize, 512-d raw
    image and text embeddings, 77-token context, QuickGELU (the `openai` tag), frozen."""
    vit_b_32_weights, proj = vit_b_32_weights
    with pytest.raises(ValueError, match="224"):  # checked before the weights are read
        ClipViTB32(weights_path=str(vit_b_32_weights), size=128)
    backbone = BACKBONES.get("clip-vit-b-32")(weights_path=str(vit_b_32_weights))
    assert isinstance(backbone, ClipViTB32) and isinstance(backbone, FeatureBackbone)
    assert backbone.registry_name == "clip-vit-b-32"
    assert backbone.weights_sha256 == hashlib.sha256(vit_b_32_weights.read_bytes()).hexdigest()
    assert backbone.resize == "bicubic-224-centercrop" and backbone.num_features == 512
    assert backbone.context_length == 77 and backbone.pretrained == "openai"
    assert any(isinstance(m, open_clip.model.QuickGELU) for m in backbone.modules())
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    assert torch.equal(backbone.model.visual.proj, proj)

    features = backbone(_images((2, 1, 16, 16), 0))  # grayscale, tiny: resized to 224
    assert features.shape == (2, 512) and features.dtype == torch.float32 and torch.isfinite(features).all()
    with pytest.warns(UserWarning, match="1 of 2 captions exceed the 77-token context"):
        text = backbone.encode_text(["a photo of a seven", LONG_CAPTION])
    assert text.shape == (2, 512) and backbone.last_num_truncated == 1


def test_missing_weights_error_names_file_source_and_place(tmp_path):
    """A missing file, and no file with the Hub unreachable: BackboneWeightsError saying what and where."""
    missing = tmp_path / "nowhere" / "open_clip_pytorch_model.bin"
    with pytest.raises(BackboneWeightsError) as info:
        ClipViTB32(weights_path=str(missing))
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    for needle in ("clip-vit-b-32", HUB_REPO, "open_clip_pytorch_model.bin", "'openai'", "--backbone-weights",
                   WEIGHTS_ENV, "HF_HUB_CACHE"):
        assert needle in message, needle
    with pytest.raises(BackboneWeightsError, match="Hub checkpoint is unavailable") as info:
        ClipViTB32()
    assert HUB_REPO in str(info.value) and WEIGHTS_ENV in str(info.value)


def test_weights_from_env_and_hub_cache(tmp_path, monkeypatch):
    """Order: argument, then $BENCH_CLIP_WEIGHTS, then the tag's checkpoint in the (offline) Hugging Face cache."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    args = ("ViT-B-32", "openai", WEIGHTS_ENV, "clip-vit-b-32")
    monkeypatch.setenv(WEIGHTS_ENV, str(b))
    assert resolve_weights_path(str(a), *args) == str(a)
    assert resolve_weights_path(None, *args) == str(b)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "gone.bin"))
    with pytest.raises(BackboneWeightsError, match="gone.bin does not exist"):
        resolve_weights_path(None, *args)
    monkeypatch.delenv(WEIGHTS_ENV)
    # A Hugging Face cache holding the tag's checkpoint is used offline.
    repo_dir = tmp_path / "hf-cache" / f"models--{HUB_REPO.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0" * 40)
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"w")
    assert Path(resolve_weights_path(None, *args)).resolve() == (snapshot / "open_clip_pytorch_model.bin").resolve()


def test_features_are_raw_image_embeddings(tiny):
    """forward = encode_image(preprocess(x)), not L2-normalized; grayscale equals its RGB repeat."""
    images = _images((3, 3, 40, 56), 1)
    features = tiny(images)
    assert features.shape == (3, 16) and tiny.num_features == 16
    with torch.inference_mode():
        expected = tiny.model.encode_image(tiny.preprocess(images))
    assert torch.allclose(features, expected)
    assert not torch.allclose(features.norm(dim=1), torch.ones(3))
    gray = _images((2, 1, 20, 20), 2)
    assert torch.allclose(tiny(gray), tiny(gray.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="uint8"):
        tiny(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("shape", [(2, 3, 40, 56), (2, 3, 300, 260), (1, 1, 28, 28), (1, 3, 224, 224)])
def test_preprocess_matches_open_clip_pil_transform(tiny, shape):
    """Same as open_clip's own eval transform on PIL images (resize shortest side, bicubic, center crop,
    OpenAI mean/std) to within 2 uint8 levels, even on noise."""
    import numpy as np
    from PIL import Image

    transform = open_clip.image_transform(
        224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD,
        interpolation="bicubic", resize_mode="shortest",
    )
    images = _images(shape, 3)
    reference = torch.stack(
        [transform(Image.fromarray(im.expand(3, -1, -1).permute(1, 2, 0).numpy())) for im in images]
    )
    ours = tiny.preprocess(images)
    assert ours.shape == reference.shape == (shape[0], 3, 224, 224)
    levels = (ours - reference).abs() * tiny.std * 255
    assert levels.max().item() <= 2.01 and levels.mean().item() < 0.01


def test_batch_independent(tiny):
    """Each image's features and each pair's cosine do not depend on the rest of the batch."""
    images = _images((4, 3, 32, 32), 4)
    captions = ["a red square", "a digit", LONG_CAPTION, "noise"]
    features = tiny(images)
    with pytest.warns(UserWarning, match="truncated"):
        cos = tiny.similarity(images, captions)
    for i in range(4):
        assert torch.allclose(tiny(images[i : i + 1]), features[i : i + 1], atol=1e-5)
    with pytest.warns(UserWarning, match="truncated"):
        tail = tiny.similarity(images[1:], captions[1:])
    assert torch.allclose(tail, cos[1:], atol=1e-5)


def test_similarity_is_cosine_and_feeds_clip_score(tiny):
    """similarity = cos(encode_image, encode_text) per pair; CLIPScore on it = clip_score of the embeddings."""
    images = _images((3, 3, 32, 32), 5)
    captions = ["one", "two two", "three three three"]
    cos = tiny.similarity(images, captions)
    assert cos.shape == (3,) and tiny.last_num_truncated == 0
    image_emb, text_emb = tiny(images), tiny.encode_text(captions)
    assert text_emb.shape == (3, 16)
    assert torch.allclose(cos, F.cosine_similarity(image_emb, text_emb, dim=-1), atol=1e-6)
    metric = CLIPScore()
    metric.update(cos, num_truncated=tiny.last_num_truncated)
    mean, std = clip_score(image_emb, text_emb)
    assert metric.compute().item() == pytest.approx(mean.item(), rel=1e-5, abs=1e-5)
    assert metric.last_std.item() == pytest.approx(std.item(), rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="in pairs"):
        tiny.similarity(images, captions[:2])


def test_truncation_counted(tiny):
    """A 200-word caption is truncated to 77 tokens ending in end-of-text; 75 words fit exactly, 76 do not."""
    captions = ["a cat", LONG_CAPTION, " ".join(["a"] * 75), " ".join(["a"] * 76)]
    tokens, truncated = tiny.tokenize(captions)
    assert tokens.shape == (4, 77) and truncated.tolist() == [False, True, False, True]
    eot = tiny.tokenizer.eot_token_id
    assert tokens[1, -1].item() == eot and tokens[2, -1].item() == eot and tokens[0, -1].item() == 0
    with pytest.warns(UserWarning, match="2 of 4 captions"):
        tiny.encode_text(captions)
    assert tiny.last_num_truncated == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.encode_text(["short"])
    assert tiny.last_num_truncated == 0
    with pytest.raises(TypeError):
        tiny.tokenize("not a list")


def test_checkpoint_formats(tiny, tiny_weights, tmp_path):
    """.safetensors and open_clip training checkpoints ({'state_dict': {'module.…'}}) load to the same model."""
    from safetensors.torch import save_file

    state = torch.load(tiny_weights, weights_only=True)
    images = _images((2, 3, 32, 32), 6)
    expected = tiny(images)
    safe = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    ckpt = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    for path in (safe, ckpt):
        other = OpenCLIPBackbone(str(path), model_name=TINY, pretrained=None)
        assert other.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert torch.allclose(other(images), expected)


class _NotATensor:
    pass


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script/save deprecation
def test_unsafe_or_wrong_files_refused(tiny_weights, tmp_path):
    """TorchScript archives and pickled objects are refused (weights_only=True); a wrong state dict is refused."""
    scripted = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    pickled = tmp_path / "pickled.pt"
    torch.save({"visual.proj": _NotATensor()}, pickled)
    partial = tmp_path / "partial.pt"
    state = torch.load(tiny_weights, weights_only=True)
    state.pop("visual.proj")
    torch.save(state, partial)
    with pytest.raises(BackboneWeightsError, match="TorchScript"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        OpenCLIPBackbone(str(scripted), model_name=TINY, pretrained=None)
    with pytest.raises(BackboneWeightsError, match="weights_only=True"):
        OpenCLIPBackbone(str(pickled), model_name=TINY, pretrained=None)
    with pytest.raises(BackboneWeightsError, match=f"does not fit open_clip {TINY}"):
        OpenCLIPBackbone(str(partial), model_name=TINY, pretrained=None)
    with pytest.raises(BackboneWeightsError, match="no weights file given"):
        OpenCLIPBackbone(None, model_name=TINY, pretrained=None)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        OpenCLIPBackbone(str(tiny_weights), model_name="ViT-Nope-1", pretrained=None)
