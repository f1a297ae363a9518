"""datamodules.captioned_fashion: captions from the label and two measured attributes, on controlled and real images."""

import numpy as np
import pytest
import torch

import datamodules.fashion_mnist as fm
from datamodules.captioned_fashion import (
    CLASS_NAMES, SIZES, TONES, CaptionedFashionMNISTDataModule, build_vocab, bucket, measure,
)
from tests.datamodules.test_fashion_mnist import write_idx


def _image(pixels: int, value: int) -> np.ndarray:  # (28, 28) uint8 with `pixels` ink pixels of intensity `value`
    img = np.zeros(28 * 28, dtype=np.uint8)
    img[:pixels] = value
    return img.reshape(28, 28)


@pytest.fixture
def controlled(tmp_path):
    """27 train images spanning 3 sizes × 3 tones, and 3 test images with known attributes."""
    sizes, tones = (50, 200, 500), (60, 150, 250)
    train = [_image(p, v) for p in sizes for v in tones] * 3  # each size and tone 9 times: terciles fall between
    test = [_image(50, 250), _image(500, 60), _image(200, 150)]
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.stack(train))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", (np.arange(len(train)) % 10).astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.stack(test))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 5, 0], dtype=np.uint8))
    return tmp_path


def test_measure_size_and_tone():
    images = torch.from_numpy(np.stack([_image(98, 255), _image(392, 51)])).float().div(255).unsqueeze(1)
    size, tone = measure(images)
    torch.testing.assert_close(size, torch.tensor([98 / 784, 392 / 784]))
    torch.testing.assert_close(tone, torch.tensor([1.0, 0.2]))
    assert bucket(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.3, 0.6])).tolist() == [0, 1, 2]


def test_captions_state_class_size_and_tone(controlled):
    dm = CaptionedFashionMNISTDataModule(data_dir=str(controlled), val_size=0, batch_size=4)
    dm.setup()
    captions = dm.captions["test"]
    for caption, (name, size, tone) in zip(captions, [("ankle boot", "small", "light"), ("sandal", "large", "dark"),
                                                       ("t-shirt", "medium", "grey")]):
        words = caption.split()
        assert name in caption and size in words and tone in words, caption
    text = dm.split_tensors("test")["text"]
    assert text.shape == (3, dm.text_length) and text.dtype == torch.long
    vocab = build_vocab()
    assert (text != 1).all(), "every caption word is in the vocabulary (no <unk>)"
    decoded = [" ".join(w for i in row for w, j in vocab.items() if j == i and i > 1) for row in text.tolist()]
    assert decoded == captions
    spec = dm.data_spec()
    assert spec.modalities == ("image", "text") and spec.vocab_size == len(vocab)


def test_image_size_resizes_after_measuring(controlled):
    small = CaptionedFashionMNISTDataModule(data_dir=str(controlled), val_size=0, image_size=14)
    small.setup()
    native = CaptionedFashionMNISTDataModule(data_dir=str(controlled), val_size=0)
    native.setup()
    assert small.split_tensors("test")["image"].shape == (3, 1, 14, 14)
    assert small.captions == native.captions  # attributes come from the native 28×28 images


@pytest.mark.skipif(
    not all((fm.DEBIAN_DIR / n).exists() for pair in fm._FILES.values() for n in pair),
    reason=f"real Fashion-MNIST not installed in {fm.DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_captions(monkeypatch):
    """On the real data: each caption names its label's class, and each attribute splits train into thirds."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    dm = CaptionedFashionMNISTDataModule()
    dm.setup()
    train = dm.captions["train"]
    labels = dm.split_tensors("train")["label"].tolist()
    assert all(CLASS_NAMES[y] in c for c, y in zip(train[:2000], labels[:2000]))
    for words in (SIZES, TONES):
        counts = [sum(w in c.split() for c in train) for w in words]
        assert all(abs(n / len(train) - 1 / 3) < 0.02 for n in counts), counts
