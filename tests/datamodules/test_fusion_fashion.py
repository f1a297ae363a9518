"""datamodules.fusion_fashion: collections split the look-alike classes, captions agree with labels, the text alone
cannot name the class, the occlusion hides exactly one half; on controlled files and on the real Fashion-MNIST."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

import datamodules.fashion_mnist as fm
from datamodules.captioned_fashion import measure
from datamodules.fusion_fashion import (
    COLLECTION_OF, COLLECTIONS, TEMPLATES, FusionFashionMNISTDataModule, bucket_per_class, class_terciles,
)
from datamodules.registry import DATAMODULES
from models.fusion.minilm import decode_captions
from tests.datamodules.test_fashion_mnist import write_idx

TOPS, SHOES = (0, 2, 3, 4, 6), (5, 7, 9)  # the classes a half-hidden garment confuses among themselves


def _phrasing_in(caption: str) -> str:
    """The collection whose phrasing the caption contains (exactly one must match)."""
    found = {name for name, (phrasings, _) in COLLECTIONS.items()
             if any(f" {p} " in f" {caption} " for p in phrasings)}
    assert len(found) == 1, (caption, found)
    return found.pop()


def _scattered(rng: np.random.Generator, count: int) -> np.ndarray:
    """A (28, 28) uint8 image with ``count`` ink pixels (intensity 64..255) at random places."""
    img = np.zeros(28 * 28, dtype=np.uint8)
    img[rng.permutation(28 * 28)[:count]] = rng.integers(64, 256, count)
    return img.reshape(28, 28)


@pytest.fixture
def controlled(tmp_path):
    """40 train images (4 per class, every one with a different ink area) and 10 test images (one per class)."""
    rng = np.random.default_rng(0)
    train = np.stack([_scattered(rng, 200 + 13 * i) for i in range(40)])
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", (np.arange(40) % 10).astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(1, 256, (10, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8))
    return tmp_path


def test_collections_pair_classes_that_do_not_look_alike():
    assert sorted(COLLECTION_OF) == list(range(10))  # every class in exactly one collection
    for _, classes in COLLECTIONS.values():
        assert len(classes) >= 2  # the caption alone never names the class
    for cluster in (TOPS, SHOES):  # the look-alike classes are all in different collections
        assert len({COLLECTION_OF[y] for y in cluster}) == len(cluster)


def test_per_class_terciles_and_buckets():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    cuts = class_terciles(values, labels, num_classes=2)
    torch.testing.assert_close(cuts, torch.tensor([[5 / 3, 7 / 3], [50 / 3, 70 / 3]]))
    # the same value is "large" for class 0 and "small" for class 1
    assert bucket_per_class(torch.tensor([3.0, 3.0, 20.0]), torch.tensor([0, 1, 1]), cuts).tolist() == [2, 0, 1]


def test_controlled_files(controlled):
    dm = FusionFashionMNISTDataModule(data_dir=str(controlled), val_size=10, image_size=28, batch_size=4)
    full = FusionFashionMNISTDataModule(data_dir=str(controlled), val_size=10, occlusion="none")
    dm.setup()
    full.setup()
    spec = dm.data_spec()
    assert spec.modalities == ("image", "text") and spec.num_classes == 10 and spec.text_length == dm.text_length
    assert spec.id_to_word[0] == "<pad>" and all(dm.vocab[w] == i for i, w in enumerate(spec.id_to_word))
    for split, n in (("train", 30), ("val", 10), ("test", 10)):
        t, ref = dm.split_tensors(split), full.split_tensors(split)
        assert t["image"].shape == (n, 1, 28, 28) and t["text"].shape == (n, dm.text_length)
        # captions: the label's collection, every word in the vocabulary, nothing cut, ids decode to the string
        for caption, y in zip(dm.captions[split], t["label"].tolist()):
            assert _phrasing_in(caption) == COLLECTION_OF[y]
        assert (t["text"] != 1).all()
        assert (t["text"] != 0).sum(1).tolist() == [len(c.split()) for c in dm.captions[split]]
        assert decode_captions(t["text"], spec.id_to_word) == dm.captions[split]
        assert dm.captions[split] == full.captions[split]  # occlusion changes the image only
        # occlusion: the recorded half is zero, the other half is the original image
        for k, side in enumerate(dm.sides[split].tolist()):
            hidden = torch.zeros(28, 28, dtype=torch.bool)
            {0: hidden[:14], 1: hidden[14:], 2: hidden[:, :14], 3: hidden[:, 14:]}[side].fill_(True)
            image, original = t["image"][k, 0], ref["image"][k, 0]
            assert (image[hidden] == 0).all() and torch.equal(image[~hidden], original[~hidden])
    assert set(torch.cat(list(dm.sides.values())).tolist()) == {0, 1, 2, 3}


def test_attributes_are_measured_on_the_whole_image_relative_to_its_class(controlled):
    dm = FusionFashionMNISTDataModule(data_dir=str(controlled), val_size=10)
    dm.setup()
    raw = fm.find_fashion_mnist(str(controlled))
    train = torch.from_numpy(raw["train"][0][:30].copy()).float().div(255).unsqueeze(1)
    labels = torch.from_numpy(raw["train"][1][:30].astype(np.int64))
    size, _ = measure(train)
    torch.testing.assert_close(dm.size_cuts, class_terciles(size, labels))
    expected = bucket_per_class(size, labels, dm.size_cuts)  # each class's 3 training images: small, medium, large
    assert (torch.bincount(expected * 10 + labels, minlength=30) == 1).all()
    words = ("small", "medium", "large")
    for caption, b in zip(dm.captions["train"], expected.tolist()):
        assert words[b] in caption.split()


def test_registered_and_validates_occlusion():
    assert DATAMODULES.get("fusion-fashion-mnist") is FusionFashionMNISTDataModule
    with pytest.raises(ValueError, match="occlusion"):
        FusionFashionMNISTDataModule(occlusion="quarter")
    assert max(len(t.format(occasion="an evening out", size="medium", tone="light").split()) for t in TEMPLATES) \
        == FusionFashionMNISTDataModule.text_length


# ----------------------------------------------------------------------------------------------- real files
real = pytest.mark.skipif(not (fm.DEBIAN_DIR / "train-images-idx3-ubyte.gz").exists(),
                          reason="the Debian package dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def real_dm():
    dm = FusionFashionMNISTDataModule(train_subset=3000, val_size=1000, image_size=14)
    dm.setup()
    return dm


@real
def test_real_shapes_and_batches(real_dm):
    sizes = {s: len(real_dm.split_tensors(s)["label"]) for s in ("train", "val", "test")}
    assert sizes == {"train": 3000, "val": 1000, "test": 10000}
    batch = next(iter(real_dm.train_dataloader()))
    assert batch["image"].shape == (128, 1, 14, 14) and batch["text"].shape == (128, real_dm.text_length)
    assert batch["image"].min() >= 0 and batch["image"].max() <= 1


@real
def test_real_text_alone_cannot_identify_the_class(real_dm):
    """Best text-only rule (majority label per caption string, fit on train) scores about 50% on test."""
    by_caption: dict[str, Counter] = defaultdict(Counter)
    for caption, y in zip(real_dm.captions["train"], real_dm.split_tensors("train")["label"].tolist()):
        by_caption[caption][y] += 1
    test_labels = real_dm.split_tensors("test")["label"].tolist()
    hits = sum(by_caption[c].most_common(1)[0][0] == y for c, y in zip(real_dm.captions["test"], test_labels)
               if c in by_caption)
    assert 0.4 < hits / len(test_labels) < 0.6
    seen: dict[str, set[int]] = defaultdict(set)
    for caption, counts in by_caption.items():  # a caption's labels are its collection's classes, and both occur
        collection = _phrasing_in(caption)
        assert set(counts) <= set(COLLECTIONS[collection][1])
        seen[collection] |= set(counts)
    assert {name: sorted(classes) for name, classes in seen.items()} == \
        {name: sorted(classes) for name, (_, classes) in COLLECTIONS.items()}


@real
def test_real_attribute_buckets_are_balanced_within_each_class(real_dm):
    train = real_dm.split_tensors("train")
    words = {"small": 0, "medium": 1, "large": 2}
    buckets = torch.tensor([next(words[w] for w in c.split() if w in words) for c in real_dm.captions["train"]])
    counts = torch.bincount(train["label"] * 3 + buckets, minlength=30).view(10, 3).float()
    share = counts / counts.sum(1, keepdim=True)  # (10, 3) per-class bucket frequencies
    assert (share > 0.25).all() and (share < 0.42).all(), share
