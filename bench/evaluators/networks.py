"""The in-domain evaluator networks: a small CLIP-style image–text model and a small CNN classifier.

Plain ``nn.Module``s (no Lightning): they are trained once by ``python -m bench.evaluators train NAME`` and then
only used frozen behind a registered backbone (:mod:`bench.backbones.indomain`). Images are 1-channel floats in
[0, 1]; captions are strings, tokenized by :class:`WordTokenizer` (whitespace words, lower-cased) whose word list
is stored in the weights file next to the state dict, so an evaluator file is self-contained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

PAD_WORD, UNK_WORD = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


class WordTokenizer:
    """Whitespace word tokenizer with a fixed word list (id = position in the list; 0 = padding, 1 = unknown).

    Args:
        words: The vocabulary, ``words[0] == "<pad>"`` and ``words[1] == "<unk>"``.
        length: Token length L of every encoded caption (longer captions are truncated, shorter right-padded).
    """

    def __init__(self, words: Sequence[str], length: int) -> None:
        if len(words) < 2 or words[0] != PAD_WORD or words[1] != UNK_WORD:
            raise ValueError(f"a vocabulary starts with {PAD_WORD!r}, {UNK_WORD!r}; got {list(words[:2])}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.words = list(words)
        self.length = length
        self.index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def build(captions: Iterable[str]) -> list[str]:
        """The word list of ``captions``: padding, unknown, then every distinct lower-cased word in sorted order."""
        vocab = sorted({w for caption in captions for w in caption.lower().split()} - {PAD_WORD, UNK_WORD})
        return [PAD_WORD, UNK_WORD, *vocab]

    def __len__(self) -> int:
        return len(self.words)

    def num_words(self, caption: str) -> int:
        """Number of whitespace words of ``caption`` (more than :attr:`length` means it is truncated)."""
        return len(caption.split())

    def encode(self, captions: Sequence[str]) -> torch.Tensor:  # B captions -> (B, L) long
        """Token ids (B, L), right-padded with 0; unknown words map to 1.

        Raises:
            TypeError: ``captions`` is a single string or holds non-strings.
        """
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        out = torch.full((len(captions), self.length), PAD_ID, dtype=torch.long)
        for i, caption in enumerate(captions):
            ids = [self.index.get(w, UNK_ID) for w in caption.lower().split()][: self.length]
            if ids:
                out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


@dataclass(frozen=True)
class ConvConfig:
    """Hyperparameters of :class:`ConvEncoder`.

    Attributes:
        in_channels: Image channels (1 for the grayscale data here).
        widths: Output channels of each layer; every layer after the first halves the resolution.
        image_size: Side S of the square input the network is trained at.
        stem_stride: Stride of the first layer (2 halves 28×28 at once: ~2.5× cheaper on CPU).
    """

    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)
    image_size: int = 28
    stem_stride: int = 1


class ConvEncoder(nn.Module):
    """CNN image tower: layers of (3×3 conv, BatchNorm, ReLU), the first with stride ``stem_stride`` and every
    later one with stride 2, then global average pooling. Output dimension = ``widths[-1]``.

    Args:
        config: See :class:`ConvConfig`.
    """

    def __init__(self, config: ConvConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for i, width in enumerate(config.widths):
            stride = config.stem_stride if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) float in [0, 1] -> (B, D)
        x = self.body(images * 2.0 - 1.0)  # (B, D, S', S')
        return x.mean(dim=(2, 3))


@dataclass(frozen=True)
class TextConfig:
    """Hyperparameters of :class:`TextEncoder`.

    Attributes:
        vocab_size: Number of words including padding and unknown.
        length: Token length L.
        width: Embedding width.
        layers: Transformer encoder layers (0: mean of word embeddings through an MLP).
        heads: Attention heads.
    """

    vocab_size: int
    length: int
    width: int = 64
    layers: int = 1
    heads: int = 2


class TextEncoder(nn.Module):
    """Text tower: word + position embeddings, a small pre-norm Transformer encoder that ignores padding, and a
    mean over the non-padding tokens. Output dimension = ``width``.

    Args:
        config: See :class:`TextConfig`.
    """

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.width, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.zeros(config.length, config.width))
        nn.init.normal_(self.position, std=0.02)
        if config.layers > 0:
            layer = nn.TransformerEncoderLayer(
                config.width, config.heads, dim_feedforward=2 * config.width, dropout=0.0, batch_first=True,
                norm_first=True,
            )
            self.encoder: nn.Module = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.Sequential(nn.Linear(config.width, config.width), nn.GELU())
        self.norm = nn.LayerNorm(config.width)
        self.out_dim = config.width

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, L) long -> (B, W)
        pad = tokens == PAD_ID  # (B, L)
        x = self.word(tokens) + self.position[: tokens.shape[1]]  # (B, L, W)
        if isinstance(self.encoder, nn.TransformerEncoder):
            # An all-padding caption would make every attention row empty: let it attend to its first token.
            safe_pad = pad.clone()
            safe_pad[:, 0] = False
            x = self.encoder(x, src_key_padding_mask=safe_pad)  # (B, L, W)
        else:
            x = self.encoder(x)
        keep = (~pad).unsqueeze(-1).float()  # (B, L, 1)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, W)
        return self.norm(pooled)


@dataclass(frozen=True)
class ContrastiveConfig:
    """Hyperparameters of :class:`ContrastiveImageText` (stored as ``arch`` in the weights file).

    Attributes:
        image: The image tower. text: The text tower. embed_dim: Shared embedding dimension E.
        init_temperature: Initial softmax temperature τ (the learnable parameter is log(1/τ), clamped to ≤ log 100).
    """

    image: ConvConfig
    text: TextConfig
    embed_dim: int = 64
    init_temperature: float = 0.07

    def to_dict(self) -> dict:
        """Plain builtins (tuples as lists) for the weights file."""
        d = asdict(self)
        d["image"]["widths"] = list(self.image.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ContrastiveConfig:
        image = dict(d["image"])
        image["widths"] = tuple(image["widths"])
        return cls(
            image=ConvConfig(**image), text=TextConfig(**d["text"]), embed_dim=int(d["embed_dim"]),
            init_temperature=float(d["init_temperature"]),
        )


MAX_LOGIT_SCALE = math.log(100.0)


class ContrastiveImageText(nn.Module):
    """CLIP-style image–text model: two towers projected linearly to a shared, L2-normalized space, and a
    learnable temperature (CLIP's ``logit_scale``).

    Args:
        config: See :class:`ContrastiveConfig`.
    """

    def __init__(self, config: ContrastiveConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ConvEncoder(config.image)
        self.text_encoder = TextEncoder(config.text)
        self.image_proj = nn.Linear(self.image_encoder.out_dim, config.embed_dim, bias=False)
        self.text_proj = nn.Linear(self.text_encoder.out_dim, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) in [0, 1] -> (B, E) unit norm
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, L) long -> (B, E) unit norm
        return F.normalize(self.text_proj(self.text_encoder(tokens)), dim=-1)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:  # -> (B_img, B_txt) logits
        """Scaled cosine logits ``exp(logit_scale) * image_emb @ text_emb.T``."""
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return scale * self.encode_image(images) @ self.encode_text(tokens).T


def contrastive_loss(logits: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss), with every pair of the same group counted as a positive.

    With ``groups=None`` (or all groups distinct) this is exactly CLIP's loss: the mean of the image→text and
    text→image cross-entropies with the diagonal as targets. With repeated groups (many images share a caption
    meaning), the target of each row is uniform over the items of the row's group, so a duplicate caption elsewhere
    in the batch is not pushed away as a false negative.

    Args:
        logits: (B, B) scaled image→text similarities (row i: image i against every caption).
        groups: (B,) integer group of each pair (e.g. the caption's attributes), or None.

    Returns:
        Scalar loss.
    """
    n = logits.shape[0]
    if groups is None:
        targets = torch.eye(n, device=logits.device, dtype=logits.dtype)
    else:
        same = (groups[:, None] == groups[None, :]).to(logits.dtype)  # (B, B), symmetric
        targets = same / same.sum(1, keepdim=True)
    loss_i2t = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t2i = -(targets * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyperparameters of :class:`ConvClassifier` (stored as ``arch`` in the weights file).

    Attributes:
        image: The CNN. num_classes: K.
    """

    image: ConvConfig
    num_classes: int = 10

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image"]["widths"] = list(self.image.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        image = dict(d["image"])
        image["widths"] = tuple(image["widths"])
        return cls(image=ConvConfig(**image), num_classes=int(d["num_classes"]))


class ConvClassifier(nn.Module):
    """Small CNN classifier: :class:`ConvEncoder` features (the penultimate layer) and a linear head.

    Args:
        config: See :class:`ClassifierConfig`.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.image)
        self.head = nn.Linear(self.encoder.out_dim, config.num_classes)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) penultimate features and (B, K) logits of (B, C, S, S) images in [0, 1]."""
        features = self.encoder(images)  # (B, D)
        return features, self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, K) logits
        return self.features_and_logits(images)[1]
