"""datamodules.hf_captions (flickr30k): a local copy in the hub's Parquet layout, tokenization, and the offline error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.base import DataUnavailableError
from datamodules.hf_captions import (
    PAD, UNK, Flickr30kDataModule, build_vocab, caption_tokens, square_resize, tokenize,
)

# (split, five captions) per row, in file order; two shards of 5 rows each.
ROWS = [
    ("train", ["A dog runs .", "a brown dog", "dog on grass", "the dog plays", "an animal"]),
    ("val", ["A cat sleeps .", "cat on a sofa", "a sleeping cat", "the cat rests", "an animal"]),
    ("train", ["Two dogs run", "dogs on grass", "a pair of dogs", "dogs play", "two animals"]),
    ("test", ["A zebra stands .", "zebra in a field", "a striped zebra", "the zebra", "an animal"]),
    ("train", ["A man rides a bike", "a cyclist", "man on a bike", "a biker", "a person"]),
    ("test", ["A dog sits", "a dog", "dog sitting", "the dog waits", "an animal"]),
    ("val", ["Children play", "kids playing", "two kids", "children outside", "people"]),
    ("train", ["A woman reads", "a reader", "woman with a book", "she reads", "a person"]),
    ("other", ["not in any split", "x", "x", "x", "x"]),
    ("test", ["A bird flies", "a flying bird", "bird in the sky", "the bird", "an animal"]),
]
SIZES = [(20, 12), (12, 20), (16, 16), (30, 10), (11, 13), (18, 14), (9, 9), (25, 15), (8, 8), (14, 22)]  # (w, h)


def make_image(index: int, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 with a pattern that depends on the row and on the position."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 11 + index * 7) % 256, (yy * 13 + index * 5) % 256, (xx + yy) * 3 % 256], -1).astype(np.uint8)


def write_flickr_parquet(root: Path) -> list[np.ndarray]:
    """Writes ``root/TEST/test/000{0,1}.parquet`` with nlphuji/flickr30k's columns; returns the images in order."""
    import datasets
    from PIL import Image

    images = [make_image(i, s) for i, s in enumerate(SIZES)]
    out = root / "TEST" / "test"
    out.mkdir(parents=True)
    for shard, part in enumerate((range(0, 5), range(5, 10))):
        ds = datasets.Dataset.from_dict({
            "image": [Image.fromarray(images[i]) for i in part],
            "caption": [ROWS[i][1] for i in part],
            "sentids": [[str(5 * i + k) for k in range(5)] for i in part],
            "split": [ROWS[i][0] for i in part],
            "img_id": [str(i) for i in part],
            "filename": [f"{1000 + i}.jpg" for i in part],
        }).cast_column("image", datasets.Image())
        ds.to_parquet(str(out / f"{shard:04d}.parquet"))
    return images


@pytest.fixture(autouse=True)
def isolated_hf_cache(tmp_path, monkeypatch):
    """Keeps `datasets`' arrow cache inside the test's tmp dir, and guarantees offline mode."""
    import datasets

    assert datasets.config.HF_HUB_OFFLINE, "tests must run with HF_HUB_OFFLINE=1 (see tests/conftest.py)"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.delenv("FLICKR30K_DIR", raising=False)


@pytest.fixture
def flickr_dir(tmp_path) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path / "nlphuji-flickr30k"
    return root, write_flickr_parquet(root)


def rows_of(split: str) -> list[int]:
    return [i for i, (s, _) in enumerate(ROWS) if s == split]


def test_splits_order_and_captions(flickr_dir) -> None:
    """Rows go to the split named in their `split` column (others dropped), in file order across shards; caption
    strings are the chosen caption of each row in that same order; labels are all 0."""
    root, _ = flickr_dir
    dm = Flickr30kDataModule(data_dir=str(root), image_size=8, caption_index=2)
    for split in ("train", "val", "test"):
        tensors = dm.split_tensors(split)
        idx = rows_of(split)
        assert tensors["image"].shape == (len(idx), 3, 8, 8) and tensors["text"].shape == (len(idx), 24)
        assert dm.caption_strings(split) == [ROWS[i][1][2] for i in idx]
        assert tensors["label"].tolist() == [0] * len(idx)
    assert sum(len(dm.caption_strings(s)) for s in ("train", "val", "test")) == len(ROWS) - 1  # "other" dropped
    spec = dm.data_spec()
    assert spec.image_shape == (3, 8, 8) and spec.num_classes == 1 and spec.modalities == ("image", "text")
    assert spec.vocab_size == len(dm.vocab) and spec.text_length == 24
    assert [spec.id_to_word[i] for i in dm.split_tensors("train")["text"][0, :3].tolist()] == ["dog", "on", "grass"]  # row 0, caption 2
    assert spec.id_to_word[PAD] == "<pad>" and spec.id_to_word[UNK] == "<unk>"
    with pytest.raises(ValueError, match="unknown split"):
        dm.caption_strings("dev")


def test_images_are_center_cropped_and_resized_like_pil(flickr_dir) -> None:
    """Each image equals PIL's RGB → center square crop → bicubic resize → uint8 / 255 of the written pixels."""
    from PIL import Image

    root, images = flickr_dir
    dm = Flickr30kDataModule(data_dir=str(root), image_size=6)
    test = dm.split_tensors("test")["image"]
    for k, i in enumerate(rows_of("test")):
        h, w = images[i].shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(images[i][top : top + side, left : left + side])
        ref = np.array(crop.resize((6, 6), Image.Resampling.BICUBIC))
        assert torch.equal(test[k], torch.from_numpy(ref).permute(2, 0, 1).float().div(255.0))
    # A square image at the target size is kept exactly (no resampling).
    assert np.array_equal(square_resize(Image.fromarray(images[6]), 9), images[6])


def test_center_crop_keeps_the_middle() -> None:
    """A wide image whose middle square is white and whose sides are black becomes all white."""
    from PIL import Image

    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 255
    out = square_resize(Image.fromarray(wide), 5)
    assert out.shape == (5, 5, 3) and (out == 255).all()


def test_vocabulary_from_training_captions_only(flickr_dir) -> None:
    """The vocabulary counts all five captions of the training images only; a test-only word maps to <unk>."""
    root, _ = flickr_dir
    dm = Flickr30kDataModule(data_dir=str(root), image_size=4)
    dm.setup()
    train_captions = [c for i in rows_of("train") for c in ROWS[i][1]]
    assert dm.vocab == build_vocab(train_captions, 5000)
    assert "zebra" not in dm.vocab and "dog" in dm.vocab and "." in dm.vocab
    text = dm.split_tensors("test")["text"]
    first = caption_tokens(ROWS[rows_of("test")[0]][1][0])  # ["a", "zebra", "stands", "."]
    expected = [dm.vocab.get(t, UNK) for t in first]
    assert text[0, : len(first)].tolist() == expected and expected[1] == UNK
    assert (text[0, len(first) :] == PAD).all()


def test_build_vocab_caps_by_frequency_then_alphabet() -> None:
    vocab = build_vocab(["b a a", "c b a", "d"], size=4)
    assert vocab == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}
    assert caption_tokens("A dog, running.") == ["a", "dog", ",", "running", "."]
    tokens = tokenize(["a b c a b", "zz"], vocab, length=3)
    assert tokens.tolist() == [[2, 3, UNK], [UNK, PAD, PAD]]
    with pytest.raises(ValueError, match="vocab_size"):
        build_vocab(["a"], size=2)


def test_vocab_size_and_length_options(flickr_dir) -> None:
    root, _ = flickr_dir
    dm = Flickr30kDataModule(data_dir=str(root), image_size=4, vocab_size=5, text_length=2, max_per_split=1)
    dm.setup()
    assert len(dm.vocab) == 5 and dm.data_spec().vocab_size == 5
    assert all(len(dm.split_tensors(s)["label"]) == 1 for s in ("train", "val", "test"))
    assert dm.split_tensors("train")["text"].shape == (1, 2)
    assert dm.caption_strings("test") == [ROWS[rows_of("test")[0]][1][0]]


def test_batches_from_the_dataloader(flickr_dir) -> None:
    root, _ = flickr_dir
    batch = next(iter(Flickr30kDataModule(data_dir=str(root), image_size=4, batch_size=3).train_dataloader()))
    assert set(batch) == {"image", "text", "label"}
    assert batch["image"].shape == (3, 3, 4, 4) and batch["text"].dtype == torch.long
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1


def test_env_var_folder(flickr_dir, monkeypatch) -> None:
    root, _ = flickr_dir
    monkeypatch.setenv("FLICKR30K_DIR", str(root))
    assert len(Flickr30kDataModule(image_size=4).caption_strings("val")) == len(rows_of("val"))


def test_offline_without_data_dir_raises_with_a_fix() -> None:
    """No data_dir, hub unreachable (offline): DataUnavailableError naming the repo, the revision and data_dir."""
    with pytest.raises(DataUnavailableError) as info:
        Flickr30kDataModule().setup()
    message = str(info.value)
    assert "nlphuji/flickr30k" in message and "refs/convert/parquet" in message and "data_dir" in message


def test_folder_problems_raise_data_unavailable(tmp_path, flickr_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError, match="no \\*.parquet"):
        Flickr30kDataModule(data_dir=str(empty)).setup()
    root, _ = flickr_dir
    with pytest.raises(DataUnavailableError, match="caption_index=5"):
        Flickr30kDataModule(data_dir=str(root), caption_index=5).setup()


def test_missing_column_raises(tmp_path) -> None:
    import datasets

    (tmp_path / "d").mkdir()
    datasets.Dataset.from_dict({"caption": [["a"]], "split": ["train"]}).to_parquet(str(tmp_path / "d" / "0.parquet"))
    with pytest.raises(DataUnavailableError, match="image"):
        Flickr30kDataModule(data_dir=str(tmp_path / "d")).setup()
