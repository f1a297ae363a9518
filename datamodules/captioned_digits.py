"""An embedded image+text dataset whose two modalities carry complementary information.

How it is built (deterministic; nothing depends on the run's seed):

* **Image**: the real scikit-learn 8×8 digit, with one half of it occluded (set to 0). Which half (top, bottom,
  left or right) is drawn per sample with a fixed seed. A half-digit is a partial view: the image alone
  identifies the digit often, not always.
* **Text**: a short caption stating two partial, true facts about the digit: its parity (even / odd) and its
  magnitude (below five / five or more), in one of several phrasings, e.g. "an odd digit of at least five".
  The two facts narrow the class down to one of four groups, {0,2,4}, {1,3}, {5,7,9}, {6,8}, so text alone can
  reach at most 40% accuracy (guessing within the group).
* **Label**: the digit (10 classes).

Reading a caption back (:meth:`CaptionedDigitsDataModule.caption_label_sets`, for ``joint-coherence``): a token
sequence is a valid caption when, after its trailing padding, it is exactly one of the 48 strings the templates can
produce (:func:`all_captions`); it then allows the digits of its group (:func:`digit_group`), else it is invalid.

Neither modality alone gives the answer reliably; the caption removes exactly the confusions a half-occluded
digit leaves (e.g. a 3 whose left half is hidden vs an 8), so a model that fuses both should beat each unimodal
baseline. The split is that of ``digits`` (stratified, seed 0).
"""

from __future__ import annotations

import torch

from datamodules.base import BenchDataModule, DataSpec, resize_images, stratified_split
from datamodules.digits import load_digits_tensors
from datamodules.registry import DATAMODULES

PAD, UNK = 0, 1
_PARITY = {0: "even", 1: "odd"}
_MAGNITUDE = {0: ("below five", "smaller than five", "under five"), 1: ("of at least five", "five or more", "above four")}
_TEMPLATES = (
    "an {parity} digit {magnitude}",
    "this digit is {parity} and {magnitude}",
    "the number shown is {parity} , {magnitude}",
    "{magnitude} and {parity}",
)
OCCLUSIONS = ("top", "bottom", "left", "right")


def caption_for(label: int, gen: torch.Generator) -> str:
    """A caption stating the parity and the magnitude of ``label`` in a randomly chosen phrasing."""
    phrasings = _MAGNITUDE[int(label >= 5)]
    magnitude = phrasings[int(torch.randint(len(phrasings), (1,), generator=gen))]
    template = _TEMPLATES[int(torch.randint(len(_TEMPLATES), (1,), generator=gen))]
    return template.format(parity=_PARITY[label % 2], magnitude=magnitude)


def digit_group(label: int) -> frozenset[int]:
    """The digits a caption of ``label`` allows: those of the same parity and magnitude, one of {0,2,4}, {1,3},
    {5,7,9}, {6,8}."""
    return frozenset(d for d in range(10) if d % 2 == label % 2 and (d >= 5) == (label >= 5))


def all_captions() -> dict[str, frozenset[int]]:
    """Every caption the templates can produce (4 templates × 2 parities × 3 phrasings of each of 2 magnitudes:
    48 strings) → the digits it allows (:func:`digit_group`).

    Raises:
        AssertionError: If one string could state two different groups (the templates would be ambiguous).
    """
    out: dict[str, frozenset[int]] = {}
    for is_high, phrasings in _MAGNITUDE.items():
        for parity_bit, parity in _PARITY.items():
            group = frozenset(d for d in range(10) if d % 2 == parity_bit and int(d >= 5) == is_high)
            for magnitude in phrasings:
                for template in _TEMPLATES:
                    caption = template.format(parity=parity, magnitude=magnitude)
                    assert out.setdefault(caption, group) == group, f"ambiguous caption {caption!r}"
    return out


def build_vocab() -> dict[str, int]:
    """Word → id over every word the templates can produce; ids 0 and 1 are padding and unknown."""
    words = set()
    for template in _TEMPLATES:
        words.update(w for w in template.split() if not w.startswith("{"))
    for phrasings in _MAGNITUDE.values():
        for p in phrasings:
            words.update(p.split())
    words.update(_PARITY.values())
    return {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(sorted(words))}}


def tokenize(captions: list[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    """Whitespace tokenization into a (N, length) long tensor, right-padded with :data:`PAD`."""
    out = torch.full((len(captions), length), PAD, dtype=torch.long)
    for i, caption in enumerate(captions):
        ids = [vocab.get(w, UNK) for w in caption.lower().split()][:length]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def occlude(images: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Sets one half of each image to 0.

    Args:
        images: (N, C, H, W) images.
        sides: (N,) indices into :data:`OCCLUSIONS`.
    """
    out = images.clone()
    h, w = images.shape[-2:]
    for k, side in enumerate(OCCLUSIONS):
        sel = sides == k
        if side == "top":
            out[sel, :, : h // 2, :] = 0
        elif side == "bottom":
            out[sel, :, h // 2 :, :] = 0
        elif side == "left":
            out[sel, :, :, : w // 2] = 0
        else:
            out[sel, :, :, w // 2 :] = 0
    return out


@DATAMODULES.register("captioned-digits")
class CaptionedDigitsDataModule(BenchDataModule):
    """Half-occluded real digits paired with captions of partial facts (see the module docstring).

    Batches are ``{"image": (B, 1, S, S), "text": (B, L), "label": (B,)}``.

    Args:
        image_size: Side the 8×8 images are resized to (after occlusion).
        occlusion: ``"half"`` hides a random half of each image; ``"none"`` keeps the full digit.
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    data_source = "offline: ships with scikit-learn"
    #: What makes a token sequence a valid caption for :meth:`caption_label_sets` (recorded in metric protocols).
    caption_validity = "exactly one of the 48 template captions after trailing padding"

    def __init__(self, image_size: int = 8, occlusion: str = "half", batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if occlusion not in ("half", "none"):
            raise ValueError(f"occlusion must be 'half' or 'none', got {occlusion!r}")
        self.save_hyperparameters()
        self.image_size = image_size
        self.occlusion = occlusion
        self.vocab = build_vocab()
        self.text_length = max(len(t.split()) for t in _TEMPLATES) + 3  # longest phrasing adds <= 3 words

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        images, labels = load_digits_tensors()
        gen = torch.Generator().manual_seed(1234)
        sides = torch.randint(len(OCCLUSIONS), (len(labels),), generator=gen)
        if self.occlusion == "half":
            images = occlude(images, sides)
        images = resize_images(images, self.image_size)
        self.captions = [caption_for(int(y), gen) for y in labels]
        text = tokenize(self.captions, self.vocab, self.text_length)
        index = stratified_split(labels, fractions=(0.1, 0.2), seed=0)
        self._split_index = index
        return {s: {"image": images[i], "text": text[i], "label": labels[i]} for s, i in index.items()}

    def caption_strings(self, split: str) -> list[str]:
        """The caption strings of ``split``, in the order of ``split_tensors(split)`` (e.g. for CLIP score).

        Raises:
            ValueError: If ``split`` is not train, val or test.
        """
        self.split_tensors(split)  # validates the split and loads the data
        return [self.captions[i] for i in self._split_index[split].tolist()]

    def caption_label_sets(self, text_ids: torch.Tensor) -> list[frozenset[int] | None]:
        """The digits each token sequence allows as a caption of this dataset, or None where it is no valid caption.

        A sequence is valid when, after dropping its trailing padding (:data:`PAD`), its ids are exactly those of
        one of the strings the templates can produce (:func:`all_captions`); padding or unknown ids inside it, extra
        or missing words make it invalid. A valid caption allows the four or so digits of its parity × magnitude
        group (:func:`digit_group`), e.g. "an odd digit below five" → {1, 3}.

        Args:
            text_ids: (N, L) long token ids, e.g. the argmax of a text decoder (any length L).

        Returns:
            N entries: a frozenset of digits, or None.

        Raises:
            ValueError: If ``text_ids`` is not 2-dimensional.
        """
        if text_ids.dim() != 2:
            raise ValueError(f"caption_label_sets takes (N, L) token ids, got shape {tuple(text_ids.shape)}")
        if not hasattr(self, "_caption_table"):
            self._caption_table = {tuple(self.vocab[w] for w in caption.split()): group
                                   for caption, group in all_captions().items()}
        out: list[frozenset[int] | None] = []
        for row in text_ids.tolist():
            while row and row[-1] == PAD:
                row.pop()
            out.append(self._caption_table.get(tuple(row)))
        return out

    def data_spec(self) -> DataSpec:
        return DataSpec.captioned((1, self.image_size, self.image_size), 10, self.vocab, self.text_length)
