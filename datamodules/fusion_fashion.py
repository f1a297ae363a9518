"""``fusion-fashion-mnist``: the real Fashion-MNIST made into an image+text task where each modality needs the other.

The larger sibling of the embedded ``captioned-digits`` (same batch format, same design), on the 70,000 real
28×28 Fashion-MNIST images (loaded like ``fashion-mnist``: the Debian files, a local folder, or the hub). How each
sample is built (deterministic; nothing depends on the run's seed):

* **Image**: the Fashion-MNIST image with one half (top, bottom, left or right, drawn per image with a fixed seed
  per split) set to 0, on the native 28×28 grid before any resize. Half a garment is a partial view: the image
  alone still tells a top from a shoe, but confuses the classes that look alike, mostly among the five tops
  (t-shirt, pullover, dress, coat, shirt) and the three shoes (sandal, sneaker, ankle boot).
* **Text**: a caption naming the shop *collection* the item belongs to, and two measured attributes, in one of four
  phrasings drawn per image with a fixed seed, e.g. "an item for cold weather , large and dark for its kind".
  The collections pair every top with an item that looks nothing like it, and split the tops and the shoes:

  =========  ===========================  =====================================
  collection phrasings                    classes
  =========  ===========================  =====================================
  summer     "summer", "hot weather"      t-shirt (0), sandal (5)
  winter     "winter", "cold weather"     coat (4), ankle boot (9)
  office     "the office", "work"         shirt (6), trouser (1)
  weekend    "the weekend", "casual days" pullover (2), sneaker (7)
  evening    "an evening out", "a party"  dress (3), bag (8)
  =========  ===========================  =====================================

  The attributes are the size (fraction of pixels above 0.1) and tone (their mean intensity) of
  ``captioned-fashion-mnist``, measured on the full (unoccluded) image, but bucketed into small / medium / large
  and dark / grey / light at the terciles *of the image's own class* on the training split (thresholds in
  :attr:`size_cuts` / :attr:`tone_cuts`, (10, 2) each). They describe the item truthfully relative to its kind
  and, by construction, carry (almost) no information about the class: text alone cannot beat guessing within the
  collection pair, i.e. about 50% accuracy.
* **Label**: the Fashion-MNIST class (10 classes).

So the caption removes exactly the confusions a half-hidden garment leaves (a shirt vs a pullover, a sandal vs a
sneaker are in different collections), and the image resolves what the caption leaves open (a t-shirt vs a
sandal): a model fusing both should clearly beat each unimodal baseline. Splits are those of ``fashion-mnist``
(official test set; the last ``val_size`` training images for validation; ``train_subset`` keeps only the first
training images for CPU budgets).
"""

from __future__ import annotations

import torch

from datamodules.base import DataSpec, resize_images
from datamodules.captioned_digits import OCCLUSIONS, PAD, UNK, occlude, tokenize
from datamodules.captioned_fashion import SIZES, TONES, measure
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.registry import DATAMODULES

#: Collection name → (its phrasings, the two classes in it).
COLLECTIONS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "summer": (("summer", "hot weather"), (0, 5)),
    "winter": (("winter", "cold weather"), (4, 9)),
    "office": (("the office", "work"), (6, 1)),
    "weekend": (("the weekend", "casual days"), (2, 7)),
    "evening": (("an evening out", "a party"), (3, 8)),
}
#: Class → its collection.
COLLECTION_OF: dict[int, str] = {y: name for name, (_, classes) in COLLECTIONS.items() for y in classes}
TEMPLATES = (
    "an item for {occasion} , {size} and {tone} for its kind",
    "something for {occasion} : a {tone} one , {size} for its kind",
    "for {occasion} , {tone} and {size} for its kind",
    "a {size} , {tone} piece meant for {occasion}",
)


def build_vocab() -> dict[str, int]:
    """Word → id over every word a caption can contain; ids 0 and 1 are padding and unknown."""
    words = set(SIZES) | set(TONES)
    for phrasings, _ in COLLECTIONS.values():
        words.update(w for p in phrasings for w in p.split())
    for template in TEMPLATES:
        words.update(w for w in template.split() if not w.startswith("{"))
    return {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(sorted(words))}}


def class_terciles(values: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(num_classes, 2) cut points: the 1/3 and 2/3 quantiles of ``values`` within each class."""
    q = torch.tensor([1 / 3, 2 / 3])
    return torch.stack([torch.quantile(values[labels == k], q) for k in range(num_classes)])


def bucket_per_class(values: torch.Tensor, labels: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    """Index 0, 1 or 2 of each value relative to its own class's two cut points (values on a cut go up)."""
    lo, hi = cuts[labels, 0], cuts[labels, 1]  # (N,), (N,)
    return (values >= lo).long() + (values >= hi).long()


def caption_for(label: int, size: int, tone: int, phrasing: int, template: int) -> str:
    """The caption stating the collection of ``label`` and the size/tone buckets.

    Args:
        label: The class. size, tone: Bucket indices into ``SIZES`` / ``TONES``.
        phrasing: Which phrasing of the collection (taken modulo their number). template: Index into TEMPLATES.
    """
    phrasings, _ = COLLECTIONS[COLLECTION_OF[label]]
    occasion = phrasings[phrasing % len(phrasings)]
    return TEMPLATES[template].format(occasion=occasion, size=SIZES[size], tone=TONES[tone])


@DATAMODULES.register("fusion-fashion-mnist")
class FusionFashionMNISTDataModule(FashionMNISTDataModule):
    """Half-occluded real Fashion-MNIST with captions of partial facts (see the module docstring).

    Batches are ``{"image": (B, 1, S, S), "text": (B, L), "label": (B,)}``; the raw strings are in
    :attr:`captions` (per split) and the occluded half of every image in :attr:`sides` (indices into
    ``("top", "bottom", "left", "right")``).

    Args:
        data_dir: Folder with the original IDX files (default: ``$FASHION_MNIST_DIR`` or the Debian package's).
        image_size: Side the images are resized to after occlusion (28 keeps the native size).
        val_size: Training images held out (from the end of the official train split) for validation.
        train_subset: If > 0, only the first this-many training images are used (for CPU budgets).
        occlusion: ``"half"`` hides a random half of each image; ``"none"`` keeps the whole garment.
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    #: Word → id of every caption word (ids 0 and 1: padding, unknown); the same for every instance.
    vocab: dict[str, int] = build_vocab()
    #: Caption length in tokens: the longest template with the longest phrasing ("an evening out": 3 words).
    text_length: int = max(len(t.split()) for t in TEMPLATES) + 2

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 28,
        val_size: int = 5000,
        train_subset: int = 0,
        occlusion: str = "half",
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        if occlusion not in ("half", "none"):
            raise ValueError(f"occlusion must be 'half' or 'none', got {occlusion!r}")
        super().__init__(data_dir, image_size, val_size, train_subset, batch_size, num_workers)
        self.occlusion = occlusion

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        image_size, self.image_size = self.image_size, 28  # the parent resizes to self.image_size: load native
        try:
            native = super().load_splits()
        finally:
            self.image_size = image_size
        train = native["train"]
        size, tone = measure(train["image"])
        self.size_cuts = class_terciles(size, train["label"])  # (10, 2)
        self.tone_cuts = class_terciles(tone, train["label"])  # (10, 2)
        self.captions: dict[str, list[str]] = {}
        self.sides: dict[str, torch.Tensor] = {}
        out = {}
        for k, (split, tensors) in enumerate(native.items()):
            gen = torch.Generator().manual_seed(2024 + k)  # one stream per split
            images, labels = tensors["image"], tensors["label"]
            n = len(labels)
            s, t = measure(images)
            s_idx = bucket_per_class(s, labels, self.size_cuts)
            t_idx = bucket_per_class(t, labels, self.tone_cuts)
            self.sides[split] = torch.randint(len(OCCLUSIONS), (n,), generator=gen)
            phrasing = torch.randint(2, (n,), generator=gen)
            template = torch.randint(len(TEMPLATES), (n,), generator=gen)
            self.captions[split] = [
                caption_for(*args) for args in zip(labels.tolist(), s_idx.tolist(), t_idx.tolist(),
                                                   phrasing.tolist(), template.tolist())
            ]
            if self.occlusion == "half":
                images = occlude(images, self.sides[split])
            out[split] = {
                "image": resize_images(images, image_size),
                "text": tokenize(self.captions[split], self.vocab, self.text_length),
                "label": labels,
            }
        return out

    def data_spec(self) -> DataSpec:
        return DataSpec.captioned((1, self.image_size, self.image_size), 10, self.vocab, self.text_length)
