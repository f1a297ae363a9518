"""datamodules.digits: the embedded scikit-learn digits (shapes, ranges, a fixed stratified split)."""

import pytest
import torch

from datamodules.base import SPLITS
from datamodules.digits import DigitsDataModule, load_digits_tensors

N_DIGITS = 1797


@pytest.fixture(scope="module")
def dm():
    return DigitsDataModule()


def test_raw_tensors():
    """All 1,797 images (N, 1, 8, 8) in [0, 1] using the full range, with labels 0..9."""
    images, labels = load_digits_tensors()
    assert images.shape == (N_DIGITS, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    assert labels.shape == (N_DIGITS,) and labels.dtype == torch.long
    assert sorted(labels.unique().tolist()) == list(range(10))


def test_shapes_and_values(dm):
    """Every split holds (N, 1, 8, 8) images in [0, 1] and (N,) long labels; the spec agrees."""
    for split in SPLITS:
        t = dm.split_tensors(split)
        assert t["image"].shape[1:] == (1, 8, 8)
        assert t["image"].shape[0] == t["label"].shape[0] > 0
        assert 0 <= t["image"].min() and t["image"].max() <= 1
        assert t["label"].dtype == torch.long
    assert dm.data_spec().image_shape == (1, 8, 8) and dm.data_spec().num_classes == 10


def test_split_sizes_disjoint_and_complete(dm):
    """The ~70/10/20 split covers every image exactly once."""
    images, _ = load_digits_tensors()
    sizes = {s: len(dm.split_tensors(s)["label"]) for s in SPLITS}
    assert sum(sizes.values()) == N_DIGITS
    for split, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(sizes[split] - frac * N_DIGITS) <= 5, sizes
    # Disjoint: no image appears in two splits (identical 8x8 digits are rare; compare the split rows as sets of
    # row-bytes against the raw data, counting multiplicities).
    from collections import Counter

    raw = Counter(x.numpy().tobytes() for x in images)
    got = Counter(x.numpy().tobytes() for s in SPLITS for x in dm.split_tensors(s)["image"])
    assert got == raw


def test_documented_split_sizes_match(dm):
    """The split sizes stated in the class docstring are the real ones."""
    import re

    documented = re.search(r"\(([\d,]+) / ([\d,]+) / ([\d,]+) images\)", " ".join(DigitsDataModule.__doc__.split()))
    assert documented, "docstring no longer states the split sizes"
    stated = [int(g.replace(",", "")) for g in documented.groups()]
    assert stated == [len(dm.split_tensors(s)["label"]) for s in SPLITS]


def test_split_is_deterministic():
    """Two instantiations (with different global seeds) give identical splits."""
    torch.manual_seed(1)
    a = DigitsDataModule()
    a.setup()
    torch.manual_seed(2)
    b = DigitsDataModule()
    b.setup()
    for split in SPLITS:
        for key in ("image", "label"):
            assert torch.equal(a.split_tensors(split)[key], b.split_tensors(split)[key])


def test_split_is_stratified(dm):
    """Every class appears in every split, in roughly the overall proportions."""
    for split, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        counts = torch.bincount(dm.split_tensors(split)["label"], minlength=10)
        assert (counts > 0).all(), f"{split} misses a class: {counts.tolist()}"
        n = counts.sum().item()
        assert (counts.float() / n - 0.1).abs().max() < 0.02, (split, counts.tolist())


def test_image_size_resize():
    """image_size resizes to (1, S, S), stays in [0, 1], and keeps the labels and split sizes."""
    big = DigitsDataModule(image_size=16)
    small = DigitsDataModule()
    for split in SPLITS:
        x = big.split_tensors(split)["image"]
        assert x.shape[1:] == (1, 16, 16)
        assert 0 <= x.min() and x.max() <= 1
        assert torch.equal(big.split_tensors(split)["label"], small.split_tensors(split)["label"])
    # Downsampling the resized images back is close to the originals (it is a resize, not noise).
    x8 = small.split_tensors("val")["image"]
    back = torch.nn.functional.avg_pool2d(big.split_tensors("val")["image"], 2)
    assert (back - x8).abs().mean() < 0.1
    assert big.data_spec().image_shape == (1, 16, 16)


@pytest.mark.parametrize("size", [7, 4, 0])
def test_image_size_below_native_raises(size):
    """Sizes below the native 8 px are refused."""
    with pytest.raises(ValueError, match="image_size"):
        DigitsDataModule(image_size=size)


def test_dataloader_batches(dm):
    """Dataloaders yield dict batches of the configured size."""
    batch = next(iter(dm.dataloader("test", batch_size=32)))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (32, 1, 8, 8) and batch["label"].shape == (32,)
