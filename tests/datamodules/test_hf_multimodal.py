"""datamodules.hf_multimodal (hateful-memes, mm-imdb): local copies in the on-disk parquet layout, vocabulary,
splits, resizing, the MM-IMDb converter and single-label rule, and the offline errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.base import DataUnavailableError
from datamodules.hf_multimodal import (
    PAD,
    UNK,
    HatefulMemesDataModule,
    MMIMDbDataModule,
    build_vocab,
    encode_texts,
    mmimdb_to_parquet,
    words,
)
from datamodules.registry import DATAMODULES

SIZE = 16
TRAIN_TEXTS = [
    "the cat is here", "the dog is there", "a cat and a dog", "the cat again",
    "love thy neighbour", "they don't like it", "the end is near", "cats and dogs",
    "nothing to see", "the cat the dog", "is it the end", "don't look up",
]
TRAIN_LABELS = [0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0]
DEV_TEXTS, DEV_LABELS = ["the dog is near", "a cat", "no image here"], [1, 0, 1]
TEST_TEXTS, TEST_LABELS = ["zebra crossing the cat", "the dog"], [0, 1]


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path: Path, columns: dict[str, list]) -> None:
    """Writes one hub-style parquet file whose ``image`` column is an HF ``Image`` (PNG bytes, or None)."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    images = [None if a is None else {"bytes": png_bytes(a), "path": None} for a in columns["image"]]
    ds = datasets.Dataset.from_dict({**columns, "image": images}).cast_column("image", datasets.Image())
    ds.to_parquet(str(path))


@pytest.fixture(autouse=True)
def isolated_hf_cache(tmp_path, monkeypatch):
    """Keeps `datasets`' cache inside the test's tmp dir, guarantees offline mode, ignores the user's folders."""
    import datasets

    assert datasets.config.HF_HUB_OFFLINE, "tests must run with HF_HUB_OFFLINE=1 (see tests/conftest.py)"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    for var in ("HATEFUL_MEMES_DIR", "MMIMDB_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def memes_dir(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny copy of ``biecho/hateful_memes`` as on the hub: data/<split>-00000-of-00001.parquet with columns
    id, image, text, label; one dev_seen row has no image (as in the release)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "hateful_memes"
    arrays = {}
    for split, texts, labels in (("train", TRAIN_TEXTS, TRAIN_LABELS), ("dev_seen", DEV_TEXTS, DEV_LABELS),
                                 ("test_seen", TEST_TEXTS, TEST_LABELS)):
        images = list(rng.integers(0, 256, (len(texts), SIZE, SIZE, 3), dtype=np.uint8))
        if split == "dev_seen":
            images[2] = None
        arrays[split] = images
        write_parquet(root / "data" / f"{split}-00000-of-00001.parquet",
                      {"id": [f"{split}{i:03d}" for i in range(len(texts))], "image": images, "text": texts,
                       "label": labels})
    return root, arrays


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)  # (C, H, W)


# ------------------------------------------------------------------------------------------------ text helpers
def test_words_and_vocab_by_hand() -> None:
    """Words are lower-cased with inner apostrophes; ids rank by frequency, ties alphabetical, capped."""
    assert words("Don't LOOK, up!  4 cats") == ["don't", "look", "up", "4", "cats"]
    vocab = build_vocab(["b a c", "a b", "a d"], max_size=4)  # counts a=3, b=2, c=1, d=1 -> keep a, b
    assert vocab == {"<pad>": PAD, "<unk>": UNK, "a": 2, "b": 3}
    ids = encode_texts(["a c b a a", ""], vocab, length=4)
    assert ids.tolist() == [[2, UNK, 3, 2], [PAD] * 4]  # truncated to 4; the empty text is all padding
    with pytest.raises(ValueError, match="vocab_size"):
        build_vocab(["a"], max_size=1)


# ------------------------------------------------------------------------------------------------ hateful memes
def test_hateful_memes_local_copy(memes_dir) -> None:
    """Splits train / dev_seen / test_seen; pixels exact at native size; labels and texts in order; the row
    without an image dropped; batch dict format and DataSpec."""
    root, arrays = memes_dir
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, text_length=6, batch_size=4)
    train, val, test = (dm.split_tensors(s) for s in ("train", "val", "test"))
    assert train["image"].shape == (12, 3, SIZE, SIZE) and val["image"].shape == (2, 3, SIZE, SIZE)
    assert test["image"].shape == (2, 3, SIZE, SIZE)
    assert torch.equal(train["image"], torch.stack([as_tensor(a) for a in arrays["train"]]))
    assert torch.equal(val["image"], torch.stack([as_tensor(a) for a in arrays["dev_seen"][:2]]))
    assert train["label"].tolist() == TRAIN_LABELS and val["label"].tolist() == DEV_LABELS[:2]
    assert test["label"].tolist() == TEST_LABELS and train["label"].dtype == torch.long
    assert dm.caption_strings("train") == TRAIN_TEXTS and dm.caption_strings("val") == DEV_TEXTS[:2]
    assert dm.dropped == {"train": 0, "val": 1, "test": 0}
    assert train["text"].shape == (12, 6) and train["text"].dtype == torch.long

    spec = dm.data_spec()
    assert spec.image_shape == (3, SIZE, SIZE) and spec.num_classes == 2
    assert spec.vocab_size == len(dm.vocab) and spec.text_length == 6 and spec.modalities == ("image", "text")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "text", "label"} and batch["image"].shape == (4, 3, SIZE, SIZE)
    assert batch["text"].shape == (4, 6)


def test_vocabulary_comes_from_training_texts_only(memes_dir) -> None:
    """"zebra" and "crossing" occur only in test: they map to <unk>; every id is below vocab_size."""
    root, _ = memes_dir
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, text_length=5)
    assert "zebra" not in dm.vocab and "crossing" not in dm.vocab
    v = dm.vocab
    assert v["<pad>"] == 0 and v["<unk>"] == 1 and v["the"] == 2  # "the" is the most frequent training word
    assert dm.split_tensors("test")["text"][0].tolist() == [UNK, UNK, v["the"], v["cat"], PAD]
    assert int(dm.split_tensors("train")["text"].max()) < len(v)


def test_vocab_size_cap(memes_dir) -> None:
    root, _ = memes_dir
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, vocab_size=4)
    assert list(dm.vocab) == ["<pad>", "<unk>", "the", "cat"]  # the: 7; cat and is: 4 each, the tie goes to "cat"
    assert dm.data_spec().vocab_size == 4
    assert set(dm.split_tensors("train")["text"].unique().tolist()) <= {0, 1, 2, 3}


def test_validation_carved_from_train_when_missing(memes_dir) -> None:
    """Without a dev split, val is a fixed subset of train (a tenth at most), disjoint from the new train."""
    root, arrays = memes_dir
    (root / "data" / "dev_seen-00000-of-00001.parquet").unlink()
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, val_size=100)
    train, val = dm.caption_strings("train"), dm.caption_strings("val")
    assert len(val) == 12 // 10 and len(train) == 12 - len(val)
    assert sorted(train + val) == sorted(TRAIN_TEXTS)
    again = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, val_size=100)
    assert again.caption_strings("val") == val  # fixed, not the run's seed
    pl.seed_everything(123)
    assert HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, val_size=100).caption_strings("val") == val
    i = TRAIN_TEXTS.index(val[0])
    assert torch.equal(dm.split_tensors("val")["image"][0], as_tensor(arrays["train"][i]))
    assert dm.split_tensors("val")["label"].tolist() == [TRAIN_LABELS[i]]


def test_resize_and_grayscale(memes_dir) -> None:
    """image_size resizes (a constant image stays constant) and channels=1 uses PIL's luminance (ITU-R 601-2)."""
    root, _ = memes_dir
    flat = np.zeros((SIZE * 2, SIZE * 2, 3), dtype=np.uint8)
    flat[...] = (200, 100, 50)
    write_parquet(root / "data" / "test_seen-00000-of-00001.parquet",
                  {"id": ["t"], "image": [flat], "text": ["x"], "label": [1]})
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=8, channels=1)
    test = dm.split_tensors("test")["image"]
    assert test.shape == (1, 1, 8, 8) and dm.data_spec().image_shape == (1, 8, 8)
    luminance = (200 * 299 + 100 * 587 + 50 * 114 + 500) // 1000  # PIL's "L" conversion, rounded
    assert torch.allclose(test, torch.full_like(test, luminance / 255.0), atol=1 / 255)
    assert dm.split_tensors("train")["image"].shape == (12, 1, 8, 8)


def test_registered() -> None:
    assert DATAMODULES.get("hateful-memes") is HatefulMemesDataModule
    assert DATAMODULES.get("mm-imdb") is MMIMDbDataModule


def test_a_fusion_model_trains_on_it(memes_dir) -> None:
    """A registered fusion classifier builds from the DataSpec and runs a fast_dev_run on the loaded batches."""
    from models import MODELS

    root, _ = memes_dir
    dm = HatefulMemesDataModule(data_dir=str(root), image_size=SIZE, text_length=6, batch_size=4)
    model = MODELS.get("mid-concat").from_data(dm.data_spec(), d_model=16, n_layers=1, n_heads=2)
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    logits = model.predict_logits(next(iter(dm.test_dataloader())))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------------------ errors
def test_offline_hub_raises_data_unavailable() -> None:
    """No data_dir and the hub unreachable (offline): DataUnavailableError naming the hub id and data_dir."""
    with pytest.raises(DataUnavailableError) as info:
        HatefulMemesDataModule().setup()
    assert "biecho/hateful_memes" in str(info.value) and "data_dir" in str(info.value)


def test_hub_failure_is_wrapped(monkeypatch) -> None:
    import datasets

    def fail(*args, **kwargs):
        raise OSError("simulated network failure")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataUnavailableError, match="simulated network failure") as info:
        HatefulMemesDataModule().setup()
    assert isinstance(info.value.__cause__, OSError)


def test_mmimdb_without_data_dir_says_how_to_get_it() -> None:
    with pytest.raises(DataUnavailableError, match="mmimdb_to_parquet"):
        MMIMDbDataModule().setup()


def test_folder_without_test_files_raises(memes_dir) -> None:
    root, _ = memes_dir
    (root / "data" / "test_seen-00000-of-00001.parquet").unlink()
    with pytest.raises(DataUnavailableError, match="test_seen-\\*.parquet"):
        HatefulMemesDataModule(data_dir=str(root)).setup()


def test_wrong_columns_raise(tmp_path) -> None:
    for split in ("train", "test_seen"):
        write_parquet(tmp_path / f"{split}-0.parquet", {"image": [np.zeros((4, 4, 3), np.uint8)], "caption": ["a"],
                                                         "label": [0]})
    with pytest.raises(DataUnavailableError, match="text"):
        HatefulMemesDataModule(data_dir=str(tmp_path)).setup()


# ------------------------------------------------------------------------------------------------------ MM-IMDb
MOVIES = {  # id -> (plot summaries, genres)
    "0001": (["A detective hunts a killer.", "second summary"], ["Crime", "Drama", "Thriller"]),
    "0002": (["Two friends fall in love."], ["Comedy", "Drama", "Romance"]),
    "0003": (["A robot learns to love."], ["Drama", "Sci-Fi"]),
    "0004": (["The detective retires."], ["Crime", "Drama"]),
    "0005": (["A comedy of errors."], ["Comedy"]),
    "0006": (["Love in space."], ["Romance", "Sci-Fi"]),
    "0007": (["Dev movie."], ["Drama", "Thriller"]),
    "0008": (["Test movie one."], ["Comedy", "Crime"]),
    "0009": (["Test movie two."], ["Western"]),  # a genre never seen in training: dropped
}
SPLIT = {"train": ["0001", "0002", "0003", "0004", "0005", "0006"], "dev": ["0007"], "test": ["0008", "0009"]}


@pytest.fixture
def mmimdb_raw(tmp_path) -> Path:
    """The original release's layout: split.json + dataset/<id>.json + dataset/<id>.jpeg."""
    raw = tmp_path / "mmimdb"
    (raw / "dataset").mkdir(parents=True)
    (raw / "split.json").write_text(json.dumps(SPLIT))
    rng = np.random.default_rng(1)
    for movie_id, (plot, genres) in MOVIES.items():
        (raw / "dataset" / f"{movie_id}.json").write_text(json.dumps({"plot": plot, "genres": genres, "title": "x"}))
        Image.fromarray(rng.integers(0, 256, (12, 8, 3), dtype=np.uint8)).save(raw / "dataset" / f"{movie_id}.jpeg")
    return raw


def test_mmimdb_converter_and_single_label_rule(mmimdb_raw, tmp_path) -> None:
    """The converter writes train/dev/test parquet; each label is the movie's genre rarest in training (ties
    alphabetical); the first plot summary is the text; a movie with no training genre is dropped."""
    out = tmp_path / "mmimdb-parquet"
    assert mmimdb_to_parquet(mmimdb_raw, out) == {"train": 6, "dev": 1, "test": 2}
    assert sorted(p.name for p in out.iterdir()) == [f"{s}-00000-of-00001.parquet" for s in ("dev", "test", "train")]
    dm = MMIMDbDataModule(data_dir=str(out), image_size=8, text_length=8)
    # training genre counts: Drama 4, Comedy 2, Crime 2, Romance 2, Sci-Fi 2, Thriller 1
    assert dm.data_spec().num_classes == 6
    assert dm.class_names == ("Comedy", "Crime", "Drama", "Romance", "Sci-Fi", "Thriller")
    names = lambda split: [dm.class_names[i] for i in dm.split_tensors(split)["label"]]  # noqa: E731
    assert names("train") == ["Thriller", "Comedy", "Sci-Fi", "Crime", "Comedy", "Romance"]
    assert names("val") == ["Thriller"] and names("test") == ["Comedy"]
    assert dm.dropped == {"train": 0, "val": 0, "test": 1}
    assert dm.caption_strings("train")[0] == "A detective hunts a killer."
    assert dm.split_tensors("train")["image"].shape == (6, 3, 8, 8)
    first = dm.split_tensors("train")["text"][0]
    assert first[:5].tolist() == [dm.vocab[w] for w in ("a", "detective", "hunts", "a", "killer")]


def test_mmimdb_env_var(mmimdb_raw, tmp_path, monkeypatch) -> None:
    out = tmp_path / "p"
    mmimdb_to_parquet(mmimdb_raw, out)
    monkeypatch.setenv("MMIMDB_DIR", str(out))
    assert len(MMIMDbDataModule(image_size=8).split_tensors("train")["label"]) == 6
