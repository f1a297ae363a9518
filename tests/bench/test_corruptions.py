"""bench.corruptions: dropping and corrupting exactly the modality asked for, reproducibly."""

import pytest
import torch

from bench.corruptions import PAD_ID, add_noise, drop_modality


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(2, 20, (6, 8), generator=g)
    text[:, 5:] = PAD_ID  # right padding
    return {"image": torch.rand(6, 1, 8, 8, generator=g), "text": text, "label": torch.arange(6)}


@pytest.mark.parametrize("modality", ["image", "text"])
def test_drop_removes_only_that_modality(batch, modality):
    out = drop_modality(batch, modality)
    other = "text" if modality == "image" else "image"
    assert torch.equal(out[other], batch[other]) and torch.equal(out["label"], batch["label"])
    expected = 0.0 if modality == "image" else PAD_ID
    assert (out[modality] == expected).all() and out[modality].shape == batch[modality].shape
    assert not (batch[modality] == expected).all(), "the input itself must be left untouched"


def test_image_noise_is_seeded_clipped_and_scaled(batch):
    a = add_noise(batch, "image", 0.5, generator=torch.Generator().manual_seed(1))
    b = add_noise(batch, "image", 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["text"], batch["text"])
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    assert torch.equal(add_noise(batch, "image", 0.0)["image"], batch["image"])
    small = (add_noise(batch, "image", 0.05, generator=torch.Generator().manual_seed(1))["image"] - batch["image"]).abs().mean()
    assert small < (a["image"] - batch["image"]).abs().mean()


def test_text_noise_replaces_words_not_padding(batch):
    out = add_noise(batch, "text", 1.0, vocab_size=20, generator=torch.Generator().manual_seed(2))
    pad = batch["text"] == PAD_ID
    assert torch.equal(out["text"][pad], batch["text"][pad])
    assert ((out["text"][~pad] >= 2) & (out["text"][~pad] < 20)).all()
    assert (out["text"][~pad] != batch["text"][~pad]).float().mean() > 0.8  # p=1: (almost) all redrawn
    assert torch.equal(out["image"], batch["image"])
    same = add_noise(batch, "text", 0.0, vocab_size=20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(same["text"], batch["text"])


def test_bad_arguments(batch):
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        drop_modality(batch, "audio")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_noise(batch, "text", 1.5, vocab_size=20)
    with pytest.raises(ValueError, match="no 'text'"):
        drop_modality({"image": batch["image"]}, "text")
