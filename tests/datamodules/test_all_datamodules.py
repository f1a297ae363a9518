"""Every registered datamodule, including ones added later, runs the shared checks of
:class:`~tests.datamodules.tester.DataModuleTesterMixin` on its offline fixture.

A datamodule registered without a tester class here fails :func:`test_every_registered_datamodule_has_a_tester`.
The fixtures are the tiny on-disk copies the per-datamodule tests write (their writers are imported from them);
the embedded digits run on the real data. Split sizes are counted by hand from how each fixture is written.
When the Debian Fashion-MNIST is installed, its real splits are checked for size and overlap too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import datamodules.fashion_mnist as fm
from datamodules import DATAMODULES, DataSpec, DataUnavailableError
from datamodules.base import SPLITS
from tests.datamodules.test_fashion_mnist import write_idx
from tests.datamodules.test_hf_captions import ROWS as FLICKR_ROWS
from tests.datamodules.test_hf_captions import write_flickr_parquet
from tests.datamodules.test_hf_images import write_hub_parquet
from tests.datamodules.test_hf_multimodal import (
    DEV_LABELS, DEV_TEXTS, MOVIES, SPLIT, TEST_LABELS, TEST_TEXTS, TRAIN_LABELS, TRAIN_TEXTS, write_parquet,
)
from tests.datamodules.tester import (
    DataModuleTesterMixin, assert_matches_spec, cross_split_duplicates, data_differs, example_hashes,
)

FASHION_HINTS = ("apt-get install", "dataset-fashion-mnist", "data_dir", "FASHION_MNIST_DIR")


# ------------------------------------------------------------------------------------------------- embedded
class TestDigits(DataModuleTesterMixin):
    datamodule_name = "digits"
    split_sizes = {"train": 1259, "val": 179, "test": 359}  # the documented stratified 70/10/20 split
    identity_changes = ({"image_size": 12},)


class TestCaptionedDigits(DataModuleTesterMixin):
    datamodule_name = "captioned-digits"
    split_sizes = {"train": 1259, "val": 179, "test": 359}  # the split of digits
    identity_changes = ({"image_size": 12}, {"occlusion": "none"})


# ---------------------------------------------------------------------------------------------- Fashion-MNIST
def write_fashion_idx(root: Path, n_train: int = 24, n_test: int = 8) -> None:
    """The four original *-ubyte.gz files with random 28x28 images; labels cycle through the 10 classes."""
    rng = np.random.default_rng(0)
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))


class FashionFixture(DataModuleTesterMixin):
    """The Fashion-MNIST family: 24 train (the last 4 held out for val) and 8 test images."""

    datamodule_args = {"val_size": 4}
    split_sizes = {"train": 20, "val": 4, "test": 8}
    identity_changes = ({"image_size": 14}, {"val_size": 6}, {"train_subset": 10})
    missing_hints = FASHION_HINTS
    env_vars = ("FASHION_MNIST_DIR",)

    def make_data(self, root: Path) -> dict[str, Any]:
        write_fashion_idx(root)
        return {"data_dir": str(root)}

    def hide_default_sources(self, monkeypatch: pytest.MonkeyPatch, empty: Path) -> None:
        super().hide_default_sources(monkeypatch, empty)
        monkeypatch.setattr(fm, "DEBIAN_DIR", empty)  # the Debian package's folder, installed or not

    def remove_part(self, root: Path) -> str:
        (root / "t10k-labels-idx1-ubyte.gz").unlink()
        return "t10k-labels-idx1-ubyte.gz"


class TestFashionMNIST(FashionFixture):
    datamodule_name = "fashion-mnist"


class TestCaptionedFashionMNIST(FashionFixture):
    datamodule_name = "captioned-fashion-mnist"


class TestFusionFashionMNIST(FashionFixture):
    datamodule_name = "fusion-fashion-mnist"
    identity_changes = (*FashionFixture.identity_changes, {"occlusion": "none"})


# ------------------------------------------------------------------------------------------ HF image datasets
class HFImageFixture(DataModuleTesterMixin):
    """30 train (the last 3 held out for val) and 8 test images in the hub's parquet layout."""

    datamodule_args = {"val_size": 3}
    split_sizes = {"train": 27, "val": 3, "test": 8}
    identity_changes = ({"image_size": 14}, {"val_size": 2})
    config: str
    image_column: str
    shape: tuple[int, int, int]  # (H, W, C) as written

    def make_data(self, root: Path) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        arrays = {s: rng.integers(0, 256, (n, *self.shape), dtype=np.uint8) for s, n in (("train", 30), ("test", 8))}
        write_hub_parquet(root, self.config, self.image_column, arrays)
        return {"data_dir": str(root)}

    def remove_part(self, root: Path) -> str:
        (root / self.config / "test-00000-of-00001.parquet").unlink()
        return "test-*.parquet"


class TestMNIST(HFImageFixture):
    datamodule_name = "mnist"
    config, image_column, shape = "mnist", "image", (28, 28, 1)
    missing_hints = ("ylecun/mnist", "huggingface-cli download", "data_dir")


class TestCIFAR10(HFImageFixture):
    datamodule_name = "cifar10"
    config, image_column, shape = "plain_text", "img", (32, 32, 3)
    missing_hints = ("uoft-cs/cifar10", "huggingface-cli download", "data_dir")


# ---------------------------------------------------------------------------------------------- Flickr30k
class TestFlickr30k(DataModuleTesterMixin):
    """tests/datamodules/test_hf_captions.py's two shards: 10 rows, one of them in no split."""

    datamodule_name = "flickr30k"
    datamodule_args = {"image_size": 8, "text_length": 8}
    split_sizes = {s: sum(split == s for split, _ in FLICKR_ROWS) for s in SPLITS}  # 4 / 2 / 3
    identity_changes = ({"image_size": 6}, {"text_length": 5}, {"vocab_size": 10}, {"caption_index": 1},
                        {"max_per_split": 2})
    missing_hints = ("nlphuji/flickr30k", "refs/convert/parquet", "huggingface-cli download", "data_dir",
                     "FLICKR30K_DIR")

    def make_data(self, root: Path) -> dict[str, Any]:
        write_flickr_parquet(root)
        return {"data_dir": str(root)}


# ---------------------------------------------------------------------------------- image+text classification
class TestHatefulMemes(DataModuleTesterMixin):
    """train 12, dev_seen 3 (one row without an image: dropped), test_seen 2, as data/<split>-*.parquet."""

    datamodule_name = "hateful-memes"
    datamodule_args = {"image_size": 16, "text_length": 6}
    split_sizes = {"train": 12, "val": 2, "test": 2}
    identity_changes = ({"image_size": 8}, {"channels": 1}, {"vocab_size": 4}, {"text_length": 4})
    missing_hints = ("biecho/hateful_memes", "huggingface-cli download", "data_dir", "HATEFUL_MEMES_DIR")

    def make_data(self, root: Path) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        for split, texts, labels in (("train", TRAIN_TEXTS, TRAIN_LABELS), ("dev_seen", DEV_TEXTS, DEV_LABELS),
                                     ("test_seen", TEST_TEXTS, TEST_LABELS)):
            images = list(rng.integers(0, 256, (len(texts), 16, 16, 3), dtype=np.uint8))
            if split == "dev_seen":
                images[2] = None
            write_parquet(root / "data" / f"{split}-00000-of-00001.parquet",
                          {"id": [f"{split}{i}" for i in range(len(texts))], "image": images, "text": texts,
                           "label": labels})
        return {"data_dir": str(root)}

    def remove_part(self, root: Path) -> str:
        (root / "data" / "test_seen-00000-of-00001.parquet").unlink()
        return "test_seen-*.parquet"


class TestMMIMDb(DataModuleTesterMixin):
    """The converter's layout (train/dev/test-*.parquet: image, plot, genres) of test_hf_multimodal's 9 movies:
    6 train, 1 dev, 2 test of which one (a genre unseen in training) is dropped."""

    datamodule_name = "mm-imdb"
    datamodule_args = {"image_size": 8, "text_length": 8}
    split_sizes = {"train": 6, "val": 1, "test": 1}
    identity_changes = ({"image_size": 6}, {"text_length": 4}, {"vocab_size": 5})
    missing_hints = ("mmimdb_to_parquet", "data_dir", "MMIMDB_DIR")

    def make_data(self, root: Path) -> dict[str, Any]:
        rng = np.random.default_rng(1)
        for split, ids in SPLIT.items():
            write_parquet(root / f"{split}-00000-of-00001.parquet", {
                "id": ids,
                "image": [rng.integers(0, 256, (12, 8, 3), dtype=np.uint8) for _ in ids],
                "plot": [MOVIES[i][0][0] for i in ids],
                "genres": [MOVIES[i][1] for i in ids],
            })
        return {"data_dir": str(root)}

    def remove_part(self, root: Path) -> str:
        (root / "train-00000-of-00001.parquet").unlink()
        return "train-*.parquet"


# ------------------------------------------------------------------------------------------------- coverage
TESTERS: dict[str, type[DataModuleTesterMixin]] = {
    cls.datamodule_name: cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, DataModuleTesterMixin) and "datamodule_name" in vars(cls)
}


@pytest.mark.parametrize("name", DATAMODULES.names())
def test_every_registered_datamodule_has_a_tester(name: str) -> None:
    assert name in TESTERS, (f"datamodule {name!r} has no tester class in {__name__}: add one with its offline "
                             f"fixture (covered: {sorted(TESTERS)})")


def test_covered_names() -> None:
    assert sorted(TESTERS) == sorted(DATAMODULES.names()), sorted(set(DATAMODULES.names()) ^ set(TESTERS))


# ------------------------------------------------------------------------------------ the checks can fail
def test_duplicates_across_splits_are_found() -> None:
    """A test image copied into train (once exactly, once with its text changed) is one leak, not two."""
    gen = torch.Generator().manual_seed(0)
    image, text = torch.rand(6, 1, 4, 4, generator=gen), torch.randint(0, 9, (6, 3), generator=gen)
    train = {"image": torch.cat([image[:3], image[4:5], image[5:6]]),
             "text": torch.cat([text[:3], text[4:5], text[5:6] + 1])}
    splits = {"train": train, "val": {"image": image[3:4], "text": text[3:4]},
              "test": {"image": image[4:], "text": text[4:]}}
    assert cross_split_duplicates(splits) == {("train", "test"): 1}
    assert len(set(example_hashes({"image": image}))) == 6


def test_a_planted_leak_between_splits_is_found(tmp_path: Path) -> None:
    """Fashion-MNIST files whose test set repeats two train images: the disjointness check counts both."""
    write_fashion_idx(tmp_path)
    train = fm.read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    test = fm.read_idx(tmp_path / "t10k-images-idx3-ubyte.gz").copy()
    test[[0, 5]] = train[[3, 22]]  # one from the kept train part, one from the held-out val part
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    dm = DATAMODULES.get("fashion-mnist")(data_dir=str(tmp_path), val_size=4)
    assert cross_split_duplicates({s: dm.split_tensors(s) for s in SPLITS}) == {("train", "test"): 1,
                                                                                 ("val", "test"): 1}


def test_spec_mismatches_are_caught() -> None:
    spec = DataSpec.captioned((1, 2, 2), 3, {"<pad>": 0, "<unk>": 1, "a": 2}, text_length=2)
    good = {"image": torch.rand(2, 1, 2, 2), "label": torch.tensor([0, 2]), "text": torch.tensor([[2, 0], [1, 0]])}
    assert_matches_spec(good, spec, "good")
    bad = [
        {**good, "image": good["image"] * 255},  # pixels not in [0, 1]
        {**good, "image": good["image"].double()},
        {**good, "label": torch.tensor([0, 3])},  # label >= num_classes
        {**good, "text": torch.tensor([[3, 0], [1, 0]])},  # id >= vocab_size
        {**good, "text": good["text"][:, :1]},  # not text_length
        {k: v for k, v in good.items() if k != "text"},  # a modality missing
    ]
    for tensors in bad:
        with pytest.raises(AssertionError):
            assert_matches_spec(tensors, spec, "bad")
    with pytest.raises(AssertionError, match="id_to_word"):  # a text spec that cannot decode its ids
        assert_matches_spec(good, DataSpec((1, 2, 2), 3, 3, 2, ("image", "text")), "no id_to_word")


def test_data_differs_sees_one_changed_value() -> None:
    a, b = (DATAMODULES.get("digits")() for _ in range(2))
    assert not data_differs(a, b)
    b.split_tensors("test")["image"][7, 0, 3, 3] += 1e-3
    assert data_differs(a, b)


def test_an_identity_blind_to_an_argument_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity check fails on an identity() that ignores image_size (a stale-cache bug)."""
    cls = DATAMODULES.get("digits")
    dm = cls(batch_size=4)
    TestDigits().test_identity_names_what_changes_the_data(dm, {})  # the real one passes
    monkeypatch.setattr(cls, "identity", lambda self: f"{self.registry_name}-fixed")
    with pytest.raises(AssertionError, match="image_size"):
        TestDigits().test_identity_names_what_changes_the_data(dm, {})


def test_unhelpful_missing_data_errors_are_caught(tmp_path: Path) -> None:
    """A message without the folder or the how-to fails the check; so does any other exception type."""
    tester = TestMNIST()

    class Quiet:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def setup(self) -> None:
            raise self.error

    tester.check_missing(lambda: Quiet(DataUnavailableError(f"ylecun/mnist: {tmp_path} is empty; "
                                                            "`huggingface-cli download`, then data_dir=DIR")),
                         str(tmp_path))
    with pytest.raises(AssertionError, match="huggingface-cli"):
        tester.check_missing(lambda: Quiet(DataUnavailableError(f"ylecun/mnist: {tmp_path} is empty")), str(tmp_path))
    with pytest.raises(FileNotFoundError):  # not swallowed: a traceback from deep inside fails the test
        tester.check_missing(lambda: Quiet(FileNotFoundError(str(tmp_path))), str(tmp_path))


# --------------------------------------------------------------------------------------- real Fashion-MNIST
@pytest.mark.skipif(
    not all((fm.DEBIAN_DIR / n).exists() for pair in fm._FILES.values() for n in pair),
    reason=f"real Fashion-MNIST not installed in {fm.DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_splits_are_disjoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Debian files: 55,000 / 5,000 / 10,000 examples, no image in two splits (exact bytes compared)."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    dm = DATAMODULES.get("fashion-mnist")()
    splits = {s: dm.split_tensors(s) for s in SPLITS}
    assert {s: len(t["label"]) for s, t in splits.items()} == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert cross_split_duplicates(splits) == {}
    assert_matches_spec(splits["test"], dm.data_spec(), "real test split")
