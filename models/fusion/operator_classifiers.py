"""One image+text classifier per registered fusion operator (``bench list fusions``), under the operator's name.

Every model shares the tokenizers and Transformer configuration of :mod:`models.fusion.classifiers`, so a
leaderboard row differs from another only in *where* and *how* the modalities are fused:

* ``early`` (``early-concat``): both token sequences → the operator → one shared encoder → head;
* ``mid``, pooled operators (``mid-concat``, ``mid-sum``, ``mid-gated``, ``mid-tensor``, ``mid-lowrank-tensor``,
  ``mid-attention``): one encoder per modality → [CLS] embeddings (B, d) → the operator → head;
* ``mid``, token operator (``mid-cross-attention``): one encoder per modality → all output tokens (B, 1 + T, d) →
  the operator (each modality attends to the other) → head;
* ``late`` (``late-average``, ``late-weighted``, ``late-stacking``): one encoder and head per modality → logits
  (B, K) → the operator. Each branch is trained as its own classifier; operators with parameters (learned weights,
  the stacking meta-learner) also get the loss of the fused prediction.

Encoders: ``image_encoder`` (``patch``, ``cnn``, ``vit``) and ``text_encoder`` (``transformer``, ``minilm``) choose
each modality's tokenizer at every stage (:mod:`models.fusion.encoders`). The ViT is a full encoder: mid and late
fusion read its [CLS] output (pooled operators) or all its tokens (token operators) directly, early fusion
concatenates its contextual tokens with the caption's before the shared encoder.

Modality invariance: with ``align_weight > 0``, a mid-fusion model adds ``align_weight`` times a contrastive
(symmetric InfoNCE) alignment loss between the modalities' pooled embeddings to its task loss
(:class:`~models.fusion.alignment.ContrastiveAlignment`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.fusion.alignment import ContrastiveAlignment
from models.fusion.classifiers import TokenClassifierBase
from models.fusion.operators import FUSIONS, FusionOperator
from models.registry import MODELS


class OperatorFusionClassifier(TokenClassifierBase):
    """Image+text classifier fusing with the registered operator :attr:`fusion_operator`.

    Args (besides those of :class:`~models.fusion.classifiers.TokenClassifierBase`):
        align_weight: Weight of the contrastive modality-alignment loss (mid fusion only; 0 disables it).
        align_temperature: Temperature of that loss.
    """

    #: Registered name of the fusion operator (``models.fusion.operators.FUSIONS``).
    fusion_operator: ClassVar[str]

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
        align_weight: float = 0.0,
        align_temperature: float = 0.1,
    ) -> None:
        if align_weight < 0:
            raise ValueError(f"align_weight must be >= 0, got {align_weight}")
        if align_weight > 0 and FUSIONS.get(self.fusion_operator).stage != "mid":
            raise ValueError(f"align_weight applies to mid fusion only; {self.fusion_operator!r} fuses "
                             f"{FUSIONS.get(self.fusion_operator).stage}")
        super().__init__(image_shape, vocab_size, text_length, num_classes, d_model, n_layers, n_heads, patch_size,
                         dropout, lr, weight_decay, image_encoder, text_encoder, id_to_word, finetune_text)

    def build(self) -> None:
        hp = self.hparams
        cls = FUSIONS.get(self.fusion_operator)
        self.input_kind = cls.input_kind
        m = len(self.modalities)
        if cls.stage == "early":
            self.fusion: FusionOperator = cls([hp.d_model] * m, hp.d_model)
            self.encoder = self.make_encoder()
            self.head = self.make_head()
            return
        self.encoders = nn.ModuleDict({name: self.make_encoder(name) for name in self.modalities})
        if cls.stage == "late":
            self.heads = nn.ModuleDict({name: self.make_head() for name in self.modalities})
            self.fusion = cls([hp.num_classes] * m, hp.num_classes)
            return
        self.fusion = cls([hp.d_model] * m, hp.d_model)
        self.head = self.make_head()
        self.alignment = (
            ContrastiveAlignment([hp.d_model] * m, proj_dim=hp.d_model, temperature=hp.align_temperature)
            if hp.align_weight > 0 else None
        )

    def _branches(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality encoder outputs: (B, 1 + T_m, d) token sequences for token operators, else (B, d)."""
        tokens = self.tokens(batch)
        if self.input_kind == "tokens":
            return [self.encoders[name].forward_tokens(t) for name, t in zip(self.modalities, tokens)]
        return [self.encoders[name](t) for name, t in zip(self.modalities, tokens)]

    def outputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Fused logits (B, K), per-modality logits (late fusion; else empty) and pooled embeddings (mid; else
        empty)."""
        stage = FUSIONS.get(self.fusion_operator).stage
        if stage == "early":
            return self.head(self.encoder(self.fusion(self.tokens(batch)))), [], []
        branches = self._branches(batch)
        if stage == "late":
            per_modality = [self.heads[name](h) for name, h in zip(self.modalities, branches)]  # [(B, K)]
            return self.fusion(per_modality), per_modality, []
        pooled = [b.mean(dim=1) for b in branches] if self.input_kind == "tokens" else branches  # [(B, d)]
        return self.head(self.fusion(branches)), [], pooled

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # -> (B, K)
        return self.outputs(batch)[0]

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fused, per_modality, pooled = self.outputs(batch)
        label = batch["label"]
        if per_modality:  # late: every branch is its own classifier; a learned combiner also learns from the fused loss
            loss = sum(F.cross_entropy(logits, label) for logits in per_modality)
            if any(p.requires_grad for p in self.fusion.parameters()):
                loss = loss + F.cross_entropy(fused, label)
        else:
            loss = F.cross_entropy(fused, label)
        if pooled and self.alignment is not None:
            align = self.alignment(pooled)
            if self._trainer is not None:  # logged when trained by Lightning (not in direct calls)
                self.log("train_align" if self.training else "val_align", align, batch_size=len(label))
            loss = loss + self.hparams.align_weight * align
        return loss, fused


def _register_all() -> None:
    """Registers one classifier class per fusion operator, named like the operator."""
    for name in FUSIONS.names():
        op = FUSIONS.get(name)
        title = "".join(part.capitalize() for part in name.split("-"))
        cls = type(f"{title}Classifier", (OperatorFusionClassifier,), {
            "__doc__": f"Image+text classifier fused by the ``{name}`` operator ({op.stage} fusion).",
            "__module__": __name__,
            "fusion_operator": name,
            "fusion_stage": op.stage,
        })
        globals()[cls.__name__] = cls
        MODELS.register(name)(cls)


_register_all()
