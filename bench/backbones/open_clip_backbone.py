"""OpenCLIP image/text encoders as a feature backbone (CLIP-FID, CLIP-KID) and for CLIP score.

One class, :class:`OpenCLIPBackbone`, wraps any architecture open_clip knows (``open_clip.list_models()``); a
registered backbone is a subclass that fixes the architecture, the pretrained tag and the environment variable of
its weights file. Shipped: ``clip-vit-b-32`` = ``ViT-B-32`` with OpenAI's weights (tag ``openai``, QuickGELU), the
network of CLIPScore (Hessel et al., 2021) and of clean-fid's / Kynkäänniemi et al.'s CLIP-FID. Another model is
one call::

    ClipViTL14 = register_open_clip("clip-vit-l-14", "ViT-L-14", "openai", weights_env="BENCH_CLIP_VIT_L_14_WEIGHTS")

or, without a registry name (Python only), ``OpenCLIPBackbone(weights_path, model_name="ViT-B-16",
pretrained="laion2b_s34b_b88k")``.

Weights, in order: the ``weights_path`` argument (``--backbone-weights FILE``), the class's environment variable
(``$BENCH_CLIP_WEIGHTS`` for ``clip-vit-b-32``), else the pretrained tag's open_clip checkpoint on the Hugging Face
Hub (``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``; served from the local HF cache when it is
there, so it works offline once downloaded). Whatever the source, the file is read here: ``.safetensors`` with
``safetensors.torch.load_file``, anything else with ``torch.load(path, map_location="cpu", weights_only=True)``
(never open_clip's or torch's unpickling of arbitrary objects, never ``trust_remote_code``), then
``load_state_dict(strict=True)``. OpenAI's original TorchScript ``ViT-B-32.pt`` is refused (it cannot be read with
``weights_only=True``); use the Hub's state dict of the same weights. The file must hold the tag's weights: the
architecture (e.g. QuickGELU for ``openai``) is built from the tag, and a state dict has no activation to check.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bench.backbones.base import BackboneWeightsError, FeatureBackbone, check_uint8_images
from bench.backbones.registry import BACKBONES
from bench.hashing import file_sha256
from bench.weights_files import file_problem, load_into, read_state_dict

#: Environment variable of ``clip-vit-b-32``'s weights file.
WEIGHTS_ENV = "BENCH_CLIP_WEIGHTS"
#: open_clip's default checkpoint names inside a Hub repository (safetensors preferred, as open_clip does).
HF_WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_source(model_name: str, pretrained: str | None) -> tuple[str, str]:
    """The tag's Hugging Face Hub repo id ('' if none) and file name in it ('' for open_clip's default names).

    open_clip's ``hf_hub`` entries read ``org/repo/`` (default file names) or ``org/repo/file``.
    """
    import open_clip

    hub = (open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("hf_hub", "") if pretrained else ""
    if not hub:
        return "", ""
    repo, file_name = os.path.split(hub)
    return repo, file_name


def missing_weights_message(
    name: str, model_name: str, pretrained: str | None, weights_env: str, reason: str
) -> str:
    """What to fetch (Hub repo and file), where to put it, and how to point the backbone at it."""
    repo, file_name = _hub_source(model_name, pretrained)
    if repo:
        files = [file_name] if file_name else list(HF_WEIGHTS_FILES)
        urls = " or ".join(f"https://huggingface.co/{repo}/resolve/main/{f}" for f in files)
        fetch = (
            f"Download {urls} (open_clip's pretrained tag {pretrained!r} of {model_name}) on a machine with network, "
            f"e.g. `huggingface-cli download {repo} {files[-1]}`"
        )
        target = files[-1]
        cache = f", or copy its Hugging Face cache folder models--{repo.replace('/', '--')} into $HF_HUB_CACHE"
    else:
        what = f"open_clip's pretrained tag {pretrained!r}" if pretrained else "no pretrained tag"
        fetch = f"{model_name} ({what}) has no Hugging Face Hub checkpoint known to open_clip; get its state dict"
        target, cache = "weights.bin", ""
    return (
        f"{name}: {reason}. {fetch}, then pass --backbone-weights /path/to/{target} or set "
        f"{weights_env}=/path/to/{target}{cache}. Accepted: a .safetensors file or a torch.save'd state dict (read "
        f"with weights_only=True; OpenAI's TorchScript ViT-*.pt is not accepted)."
    )


def resolve_weights_path(
    weights_path: str | None, model_name: str, pretrained: str | None, weights_env: str, name: str
) -> str:
    """The weights file: ``weights_path``, else ``$<weights_env>``, else the tag's Hub checkpoint (HF cache first).

    Raises:
        BackboneWeightsError: the given file does not exist, or there is no file and the Hub is unreachable.
    """
    path = weights_path or os.environ.get(weights_env) or None
    if path is not None:
        problem = file_problem(path)
        if problem is not None:
            reason = f"weights file {path} {problem}"
            raise BackboneWeightsError(missing_weights_message(name, model_name, pretrained, weights_env, reason))
        return path
    if not pretrained:
        raise BackboneWeightsError(
            missing_weights_message(name, model_name, pretrained, weights_env, "no weights file given")
        )
    repo, file_name = _hub_source(model_name, pretrained)
    if not repo:
        raise BackboneWeightsError(
            missing_weights_message(
                name, model_name, pretrained, weights_env, f"tag {pretrained!r} has no Hugging Face Hub checkpoint"
            )
        )
    from huggingface_hub import hf_hub_download

    errors = []
    for candidate in [file_name] if file_name else HF_WEIGHTS_FILES:
        try:
            return hf_hub_download(repo_id=repo, filename=candidate)
        except Exception as err:  # offline, not cached, no network, missing file: all mean "not available"
            errors.append(f"{candidate}: {type(err).__name__}")
    reason = f"no weights file given and the Hub checkpoint is unavailable ({repo}: {', '.join(errors)})"
    raise BackboneWeightsError(missing_weights_message(name, model_name, pretrained, weights_env, reason))


def load_state_dict_file(path: str, name: str = "open_clip") -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file, without unpickling arbitrary objects
    (:func:`bench.weights_files.read_state_dict`, the one reader of every backbone).

    Accepts a bare state dict or open_clip's training checkpoint (``{"state_dict": ..., "epoch": ...}``), with
    DDP's ``module.`` prefix stripped.

    Raises:
        BackboneWeightsError: the file cannot be read safely (e.g. a TorchScript archive) or holds no state dict.
    """
    return read_state_dict(
        path, name, unwrap=True,
        hint="a TorchScript archive such as OpenAI's ViT-B-32.pt is not accepted: use the open_clip state dict of "
        "the same weights from the Hugging Face Hub",
    )


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip logs 'Model initialized randomly' when built without weights; they are loaded right after."""
    root, flt = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


class OpenCLIPBackbone(FeatureBackbone):
    """An open_clip CLIP model: image embeddings as features, plus text embeddings and image-text cosine.

    Features are the **raw** image embeddings (``model.encode_image``, not L2-normalized, float32), of dimension
    the model's ``embed_dim`` (512 for ViT-B-32), as CLIP-FID uses them. :meth:`similarity` normalizes both sides.

    Preprocessing reproduces open_clip's eval transform (``resize_mode="shortest"``) on uint8 tensors: grayscale
    repeated to 3 channels; the shorter side resized to the model's image size S (224 for ViT-B-32) with bicubic
    interpolation, antialiased, as PIL does it (torchvision's PIL-like antialiased kernel, horizontal pass, round to
    uint8, vertical pass, round), the longer side to ``int(S * long / short)``; center crop S×S (torchvision's
    ``center_crop``); /255; normalized with the tag's mean/std (OpenAI's ``OPENAI_DATASET_MEAN`` /
    ``OPENAI_DATASET_STD`` for every ViT-B-32 tag). Recorded as ``resize = "bicubic-224-centercrop"``. It matches
    open_clip's PIL pipeline to within 2 uint8 levels (mean < 0.001 level).

    Text: open_clip's tokenizer of the architecture (``open_clip.get_tokenizer``; for ViT-B-32 the CLIP BPE
    tokenizer shipped inside the open_clip package, no network). Captions longer than the context length (77
    tokens) are truncated (the last kept token becomes end-of-text, as open_clip does) and counted.

    Args:
        weights_path: A state-dict file (``--backbone-weights``); default ``$<weights_env>``, else the tag's Hub
            checkpoint. See the module docstring.
        size: Must be the model's image size (or None): the resolution is part of the network.
        model_name: open_clip architecture (``open_clip.list_models()``); default the class's.
        pretrained: open_clip pretrained tag, used for the download, the QuickGELU choice and mean/std; default the
            class's. None means a local file is required.

    Raises:
        BackboneWeightsError: No weights file and the Hub checkpoint is unavailable, or the file is unreadable.
        ValueError: ``size`` differs from the model's image size, or an unknown architecture / tag.
    """

    model_name: ClassVar[str] = "ViT-B-32"
    pretrained: ClassVar[str | None] = "openai"
    weights_env: ClassVar[str] = WEIGHTS_ENV

    def __init__(
        self,
        weights_path: str | None = None,
        size: int | None = None,
        model_name: str | None = None,
        pretrained: str | None = "",
    ) -> None:
        super().__init__()
        import open_clip

        self.model_name = model_name or type(self).model_name
        self.pretrained = type(self).pretrained if pretrained == "" else pretrained
        name = getattr(type(self), "registry_name", f"open_clip:{self.model_name}")
        model_cfg = open_clip.get_model_config(self.model_name)
        if model_cfg is None:
            raise ValueError(f"{name}: unknown open_clip architecture {self.model_name!r}")
        tag_cfg = open_clip.get_pretrained_cfg(self.model_name, self.pretrained) if self.pretrained else {}
        if self.pretrained and not tag_cfg:
            raise ValueError(
                f"{name}: unknown pretrained tag {self.pretrained!r} for {self.model_name}; known: "
                f"{open_clip.list_pretrained_tags_by_model(self.model_name)}"
            )
        # Everything that depends only on the configuration is checked before the (large) weights are read.
        image_size = model_cfg["vision_cfg"].get("image_size", 224)
        if not isinstance(image_size, int):
            if image_size[0] != image_size[1]:
                raise ValueError(f"{name}: non-square image size {tuple(image_size)} is not supported")
            image_size = int(image_size[0])
        if size is not None and size != image_size:
            raise ValueError(
                f"{name} takes {image_size}x{image_size} images (the resolution is part of the network); "
                f"size={size} is not supported"
            )
        # open_clip's eval preprocessing for a built-in architecture: PreprocessCfg defaults, overridden by the tag.
        pre: dict[str, Any] = {
            "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD,
            "interpolation": "bicubic", "resize_mode": "shortest",
        }
        pre.update({k: tag_cfg[k] for k in pre if k in tag_cfg})
        self.interpolation, self.resize_mode = pre["interpolation"], pre["resize_mode"]
        if self.interpolation not in ("bicubic", "bilinear") or self.resize_mode not in ("shortest", "squash"):
            raise ValueError(
                f"{name}: preprocessing interpolation={self.interpolation!r}, resize_mode={self.resize_mode!r} "
                f"is not implemented (bicubic/bilinear, shortest/squash are)"
            )
        self.size = image_size
        crop = "centercrop" if self.resize_mode == "shortest" else "squash"
        self.resize = f"{self.interpolation}-{image_size}-{crop}"
        self.register_buffer("mean", torch.tensor(pre["mean"], dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre["std"], dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.num_features = int(model_cfg["embed_dim"])
        self.tokenizer = self._make_tokenizer(open_clip, name)
        self.context_length = int(self.tokenizer.context_length)

        path = resolve_weights_path(weights_path, self.model_name, self.pretrained, self.weights_env, name)
        state = load_state_dict_file(path, name)
        with _quiet_random_init():
            model = open_clip.create_model(
                self.model_name, pretrained=None, force_quick_gelu=bool(tag_cfg.get("quick_gelu", False))
            )
        if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
            state = {**state, "logit_scale": state["logit_scale"].reshape(model.logit_scale.shape)}
        load_into(
            model, state, path, name, target=f"open_clip {self.model_name}",
            hint="it must be the state dict of that architecture",
        )
        self.model = model
        self.weights_path = path
        self.weights_sha256 = file_sha256(os.path.abspath(path))
        self.last_num_truncated = 0
        self.requires_grad_(False)
        self.eval()

    def _make_tokenizer(self, open_clip: Any, name: str) -> Any:
        try:
            return open_clip.get_tokenizer(self.model_name)
        except Exception as err:  # an HF tokenizer that is neither cached nor downloadable
            raise BackboneWeightsError(
                f"{name}: the tokenizer of {self.model_name} could not be loaded ({type(err).__name__}: {err}); it is "
                f"a Hugging Face tokenizer that needs the Hub or its local cache (pre-fetch it on a machine with "
                f"network into $HF_HUB_CACHE)"
            ) from err

    # ---- images ----

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 3, S, S) float32
        """open_clip's eval transform on a uint8 batch (see the class docstring)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        check_uint8_images(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        h, w = images.shape[-2:]
        if self.resize_mode == "shortest":  # torchvision's Resize(int) sizes: the longer side is truncated
            out_h, out_w = (self.size, int(self.size * w / h)) if h <= w else (int(self.size * h / w), self.size)
        else:
            out_h, out_w = self.size, self.size
        # PIL resamples horizontally, rounds to uint8, then vertically; doing the same keeps within 1-2 uint8 levels
        # of open_clip's PIL pipeline even on noise (one 2-D pass differs by up to ~25 levels where bicubic
        # overshoots are clamped).
        x = TF.resize(images, [h, out_w], interpolation=mode, antialias=True) if out_w != w else images
        x = TF.resize(x, [out_h, out_w], interpolation=mode, antialias=True) if out_h != h else x
        x = TF.center_crop(x, [self.size, self.size])
        x = x.float().div(255.0)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, D)
        """Raw (unnormalized) image embeddings, float32."""
        return self.model.encode_image(self.preprocess(images.to(self.mean.device))).float()

    # ---- text ----

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, context_length) and a (B,) bool mask of the captions that were truncated to fit.

        For open_clip's BPE tokenizer the count is exact (BPE length + start/end tokens > context length); for
        other tokenizers a caption counts as truncated when it fills the whole context.
        """
        from open_clip.tokenizer import SimpleTokenizer

        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        captions = list(captions)
        tokens = self.tokenizer(captions)  # (B, L) long, truncated by open_clip
        tok = self.tokenizer
        if isinstance(tok, SimpleTokenizer) and getattr(tok, "reduction_fn", None) is None:
            truncated = torch.tensor([len(tok.encode(c)) + 2 > tokens.shape[1] for c in captions], dtype=torch.bool)
        else:
            truncated = tokens[:, -1] != 0 if len(captions) else torch.zeros(0, dtype=torch.bool)
        return tokens, truncated.reshape(len(captions))

    @torch.inference_mode()
    def encode_text(self, captions: list[str]) -> torch.Tensor:  # B captions -> (B, E)
        """Raw (unnormalized) text embeddings, float32. Over-long captions are truncated with a warning that counts
        them; the count of this call is kept in :attr:`last_num_truncated`."""
        tokens, truncated = self.tokenize(captions)
        self.last_num_truncated = int(truncated.sum())
        if self.last_num_truncated:
            warnings.warn(
                f"{self._name()}: {self.last_num_truncated} of {len(captions)} captions exceed the "
                f"{self.context_length}-token context and were truncated",
                stacklevel=2,
            )
        return self.model.encode_text(tokens.to(self.mean.device)).float()

    @torch.inference_mode()
    def similarity(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:  # -> (B,)
        """Cosine similarity of each image with its caption (pairs in order), float32 in [-1, 1]; feed
        :class:`bench.metrics.clip_score.CLIPScore` with it. Truncations: :attr:`last_num_truncated`."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions; they are scored in pairs")
        image_emb = self.forward(images)
        text_emb = self.encode_text(captions)
        return F.cosine_similarity(image_emb, text_emb, dim=-1)

    def _name(self) -> str:
        return getattr(type(self), "registry_name", f"open_clip:{self.model_name}")


def register_open_clip(
    name: str, model_name: str, pretrained: str | None, weights_env: str | None = None
) -> type[OpenCLIPBackbone]:
    """Registers an :class:`OpenCLIPBackbone` subclass for one (architecture, tag) under ``name`` and returns it.

    ``weights_env`` defaults to ``BENCH_<NAME>_WEIGHTS`` (``name`` upper-cased, hyphens → underscores).
    """
    env = weights_env or f"BENCH_{name.upper().replace('-', '_')}_WEIGHTS"
    cls = type(
        "".join(part.capitalize() for part in name.split("-")),
        (OpenCLIPBackbone,),
        {
            "model_name": model_name,
            "pretrained": pretrained,
            "weights_env": env,
            "__module__": __name__,
            "__doc__": f"open_clip {model_name} (tag {pretrained!r}); weights ``${env}`` or ``--backbone-weights``. "
            f"See :class:`OpenCLIPBackbone`.",
        },
    )
    BACKBONES.add(name, cls)
    return cls


ClipViTB32 = register_open_clip("clip-vit-b-32", "ViT-B-32", "openai", weights_env=WEIGHTS_ENV)
