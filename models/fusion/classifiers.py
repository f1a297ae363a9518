"""Image+text classifiers: the shared base of every fusion classifier, and the unimodal baselines.

Every classifier shares the tokenizers (chosen by ``image_encoder`` and ``text_encoder``, see
:mod:`models.fusion.encoders`) and the Transformer (:class:`TokenEncoder`) configuration, so the comparison
isolates *where* the modalities are fused:

* ``unimodal-image`` / ``unimodal-text`` (here): one modality's tokens → encoder → head;
* the fusion models, one per registered fusion operator (:mod:`models.fusion.operator_classifiers`), e.g.
  ``early-concat`` (both token sequences concatenated → one shared encoder → head) and ``late-average`` (one
  encoder and head per modality, each trained on its own loss; the prediction averages their class probabilities).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Classifier
from models.fusion.components import ClsReadout, EarlyConcatFusion, TokenEncoder
from models.fusion.encoders import build_image_encoder, build_text_encoder, check_encoder_kinds
from models.registry import MODELS


class TokenClassifierBase(Classifier):
    """Shared init, training and optimizer of the fusion classifiers.

    Args:
        image_shape: (C, H, W) of ``batch["image"]`` (from the datamodule).
        vocab_size: Vocabulary size of ``batch["text"]`` (from the datamodule).
        text_length: Length of ``batch["text"]`` (from the datamodule).
        num_classes: Number of classes (from the datamodule).
        d_model: Token width. n_layers: Encoder layers. n_heads: Attention heads.
        patch_size: Image patch side. dropout: Dropout rate. lr: AdamW learning rate. weight_decay: AdamW decay.
        image_encoder: Image tokenizer, one of ``patch`` (linear patch embedding), ``cnn`` (small CNN) or ``vit``
            (a Vision Transformer of ``n_layers`` blocks: mid and late fusion read its [CLS] token directly).
        text_encoder: Caption tokenizer, ``transformer`` (learned word embeddings) or ``minilm`` (the frozen
            pretrained all-MiniLM-L6-v2 token states, projected; needs ``id_to_word``).
        id_to_word: The caption vocabulary as strings (from the datamodule; ``minilm`` decodes ids with it).
        finetune_text: Fine-tune the pretrained MiniLM too (``minilm`` only; off: frozen, outputs cached).

    Attributes:
        fusion_stage: "early", "mid", "late", or "unimodal" for the baselines (a leaderboard column).
        fusion_operator: The registered fusion operator (``bench list fusions``) it fuses with; "" for baselines.
    """

    family = "fusion"
    #: Which modalities the model reads.
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    #: Where they are fused: "early", "mid", "late", or "unimodal" for the baselines.
    fusion_stage: ClassVar[str] = "unimodal"
    #: The registered fusion operator the model fuses with ("" for the baselines).
    fusion_operator: ClassVar[str] = ""

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 8, 8),
        vocab_size: int = 32,
        text_length: int = 10,
        num_classes: int = 10,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        patch_size: int = 4,
        dropout: float = 0.1,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        image_encoder: str = "patch",
        text_encoder: str = "transformer",
        id_to_word: tuple[str, ...] = (),
        finetune_text: bool = False,
    ) -> None:
        super().__init__()
        check_encoder_kinds(image_encoder, text_encoder)
        self.save_hyperparameters()
        self.tokenizers = nn.ModuleDict({m: self._make_tokenizer(m) for m in self.modalities})
        self.build()

    def build(self) -> None:
        """Creates the encoder(s), fusion and head(s) of the concrete model (called at the end of ``__init__``)."""
        raise NotImplementedError

    def _make_tokenizer(self, modality: str) -> nn.Module:
        hp = self.hparams
        if modality == "image":
            return build_image_encoder(hp.image_encoder, tuple(hp.image_shape), hp.d_model, hp.patch_size,
                                       hp.n_layers, hp.n_heads, hp.dropout)
        return build_text_encoder(hp.text_encoder, hp.vocab_size, hp.text_length, hp.d_model,
                                  tuple(hp.id_to_word), hp.finetune_text)

    def make_encoder(self, modality: str | None = None) -> nn.Module:
        """A fresh encoder of one modality's tokens (:class:`ClsReadout` when its tokenizer already is a full
        encoder, e.g. the ViT), or with ``modality=None`` a shared Transformer with this model's configuration.

        Either has ``forward_tokens(tokens) -> (B, 1 + T, d)`` and ``forward(tokens) -> (B, d)``.
        """
        if modality is not None and getattr(self.tokenizers[modality], "is_full_encoder", False):
            return ClsReadout()
        return TokenEncoder(self.hparams.d_model, self.hparams.n_layers, self.hparams.n_heads, self.hparams.dropout)

    def make_head(self) -> nn.Linear:
        """A fresh linear classification head."""
        return nn.Linear(self.hparams.d_model, self.hparams.num_classes)

    def required_modalities(self) -> tuple[str, ...]:
        return self.modalities

    def tokens(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One (B, T_m, d) token sequence per modality, in :attr:`modalities` order."""
        return [self.tokenizers[m](batch[m]) for m in self.modalities]

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and the (B, K) prediction logits."""
        logits = self.predict_logits(batch)
        return F.cross_entropy(logits, batch["label"]), logits

    def _common_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        loss, logits = self.loss(batch)
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log_dict(
            {f"{stage}_loss": loss, f"{stage}_acc": acc}, prog_bar=True, batch_size=len(logits), sync_dist=stage != "train"
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class SingleEncoderClassifier(TokenClassifierBase):
    """The tokens of :attr:`modalities` read by one encoder and one head (with a single modality: a baseline)."""

    def build(self) -> None:
        self.fusion = EarlyConcatFusion(len(self.modalities), self.hparams.d_model)
        self.encoder = self.make_encoder(self.modalities[0] if len(self.modalities) == 1 else None)
        self.head = self.make_head()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # -> (B, K)
        return self.head(self.encoder(self.fusion(self.tokens(batch))))

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch)


@MODELS.register("unimodal-image")
class UnimodalImageClassifier(SingleEncoderClassifier):
    """Baseline that sees only the image."""

    modalities = ("image",)


@MODELS.register("unimodal-text")
class UnimodalTextClassifier(SingleEncoderClassifier):
    """Baseline that sees only the caption."""

    modalities = ("text",)
