"""The configuration of the transformer generators: one frozen dataclass per model, sharing fields by inheritance.

* :class:`ImageTokensConfig` — the images and their tokenizer (every generator over image tokens, ``maskgit`` too);
* :class:`TransformerConfig` — plus the GPT-style network, sampling and optimizer (``gpt``);
* :class:`TransformerXLConfig` — plus segments and memory (``transformer-xl``);
* :class:`Text2ImageConfig` — plus the caption prefix and classifier-free guidance (``text2image-gpt``);
* :class:`MaskGITConfig` — plus MaskGIT's encoder and decoding schedule (``maskgit``; its own width/depth names).

The registered models keep their fields as explicit keyword arguments (suite files pass them, ``from_data`` and the
preflight type check read their signatures, and ``save_hyperparameters()`` records them, so the hyperparameters of a
checkpoint are unchanged); the defaults of those arguments come from here (:func:`field_defaults`), and each model
hands ``<Config>.pick(locals())`` to its base class, which builds the network from the config alone. As in
:class:`models.fusion.multimodal_vae.MultimodalVAEConfig`, a config validates its values when it is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from types import SimpleNamespace
from typing import Any, TypeVar

from models.transformer.tokenizers import ImageTokenizer, build_tokenizer

C = TypeVar("C", bound="ImageTokensConfig")


@dataclass(frozen=True)
class ImageTokensConfig:
    """The images a generator models and the tokenizer that turns them into token sequences.

    Attributes:
        image_shape: (C, H, W) of the data (from the datamodule; C = 1 for the pixel tokenizer).
        tokenizer: A registered image tokenizer (:data:`models.transformer.tokenizers.TOKENIZERS`): ``pixel``
            (quantized intensities) or ``vq`` (codes of a trained ``vq-vae``).
        levels: Intensity levels of the pixel tokenizer (its vocabulary).
        token_size: Side of the pixel token grid (area-downsampled; capped at the image side; 0 or None: the
            image size).
        tokenizer_weights: ``vq-vae`` weights file (``save_weights``) for ``tokenizer="vq"``.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    tokenizer: str = "pixel"
    levels: int = 16
    token_size: int | None = 14
    tokenizer_weights: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))  # a list from YAML / JSON

    @classmethod
    def pick(cls: type[C], values: Mapping[str, Any]) -> C:
        """The config of the fields named in ``values`` (e.g. a constructor's ``locals()``); other keys are ignored,
        missing fields take their defaults."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def as_dict(self) -> dict[str, Any]:
        """Every field by name (the keyword arguments that rebuild the model)."""
        return asdict(self)

    def build_tokenizer(self) -> ImageTokenizer:
        """The frozen tokenizer these fields describe (:func:`~models.transformer.tokenizers.build_tokenizer`)."""
        return build_tokenizer(self.image_shape, kind=self.tokenizer, levels=self.levels, size=self.token_size,
                               weights=self.tokenizer_weights)


@dataclass(frozen=True)
class TransformerConfig(ImageTokensConfig):
    """A GPT-style (nanoGPT, pre-LN, causal) prior over image tokens: network, sampling and optimizer.

    Attributes (besides those of :class:`ImageTokensConfig`):
        n_layer: Transformer blocks. n_head: Attention heads. n_embd: Width (divisible by ``n_head``).
        dropout: Dropout rate.
        temperature: Sampling temperature (<= 0: greedy). top_k: Sample among the k most likely tokens (0: all).
        lr: Peak AdamW learning rate. weight_decay: AdamW weight decay on matrices.
        warmup_steps: Linear warmup steps (0: none). cosine_decay: Cosine decay to 0.1·lr over the run.

    Raises:
        ValueError: If ``n_embd`` is not a multiple of ``n_head``.
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    temperature: float = 1.0
    top_k: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    cosine_decay: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_head < 1 or self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


@dataclass(frozen=True)
class TransformerXLConfig(TransformerConfig):
    """Transformer-XL: a :class:`TransformerConfig` read in segments with a memory of earlier ones.

    Attributes (besides those of :class:`TransformerConfig`; ``n_embd`` defaults to 124, the width at which the
    default model matches the default ``gpt``'s parameter count):
        segment_len: Tokens per segment (the last segment may be shorter).
        mem_len: Cached hidden states per layer (0: no recurrence, segments are independent).

    Raises:
        ValueError: If ``segment_len < 1`` or ``mem_len < 0``.
    """

    n_embd: int = 124
    segment_len: int = 49
    mem_len: int = 49

    def __post_init__(self) -> None:
        if self.segment_len < 1 or self.mem_len < 0:
            raise ValueError(f"need segment_len >= 1 and mem_len >= 0, got {self.segment_len}, {self.mem_len}")
        super().__post_init__()


@dataclass(frozen=True)
class Text2ImageConfig(TransformerConfig):
    """A :class:`TransformerConfig` whose sequences start with a caption prefix, with classifier-free guidance.

    Attributes (besides those of :class:`TransformerConfig`):
        vocab_size: Caption vocabulary size (id 0 = padding), from the data spec.
        text_length: Caption length L, from the data spec.
        p_uncond: Probability of replacing a training caption by the null caption.
        guidance_scale: Classifier-free guidance scale at sampling (1.0: plain conditional sampling).
        text_loss_weight: Weight of the caption next-token loss (padding targets ignored; 0: image loss only).

    Raises:
        ValueError: Without a caption vocabulary (``vocab_size < 2``) or length (``text_length < 1``), or with
            ``p_uncond`` outside [0, 1].
    """

    vocab_size: int = 0
    text_length: int = 0
    p_uncond: float = 0.1
    guidance_scale: float = 1.0
    text_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.vocab_size < 2 or self.text_length < 1:
            raise ValueError(
                f"text2image-gpt needs captioned data (vocab_size >= 2, text_length >= 1), got vocab_size="
                f"{self.vocab_size}, text_length={self.text_length}: use a captioned datamodule, e.g. captioned-digits"
            )
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must be in [0, 1], got {self.p_uncond}")
        super().__post_init__()


@dataclass(frozen=True)
class MaskGITConfig(ImageTokensConfig):
    """MaskGIT: a bidirectional encoder over image tokens and its iterative decoding schedule.

    Attributes (besides those of :class:`ImageTokensConfig`; ``image_shape`` defaults to (1, 16, 16)):
        dim: Transformer width. depth: Encoder blocks. heads: Attention heads. mlp_ratio: MLP width / dim.
        dropout: Dropout rate.
        num_steps: T, decoding steps of ``sample``.
        choice_temperature: Scale of the Gumbel noise on the confidences at the first step (annealed linearly to 0).
        sample_temperature: Softmax temperature of the token draws.
        lr: AdamW learning rate. weight_decay: AdamW weight decay.

    Raises:
        ValueError: If ``num_steps < 1``.
    """

    image_shape: tuple[int, int, int] = (1, 16, 16)
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    num_steps: int = 8
    choice_temperature: float = 4.5
    sample_temperature: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")


def field_defaults(cls: type[ImageTokensConfig]) -> SimpleNamespace:
    """The default of every field of a config class, by name (``field_defaults(TransformerConfig).n_layer``), read
    without building one (a :class:`Text2ImageConfig` with its defaults is invalid: it needs the data's captions).

    The registered models' signatures read their defaults from here, so each default is written once.
    """
    return SimpleNamespace(**{f.name: f.default for f in fields(cls)})
