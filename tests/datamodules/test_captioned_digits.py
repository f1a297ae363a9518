"""datamodules.captioned_digits: batches, true captions, half-occlusion and the complementarity of the modalities."""

import numpy as np
import pytest
import torch

from datamodules.base import SPLITS
from datamodules.captioned_digits import OCCLUSIONS, CaptionedDigitsDataModule, caption_for, occlude
from datamodules.digits import DigitsDataModule, load_digits_tensors

# Words that carry the two facts, independent of the phrasings the module uses.
LOW_WORDS = {"below", "smaller", "under"}  # "below five", "smaller than five", "under five"
HIGH_WORDS = {"least", "more", "above"}  # "of at least five", "five or more", "above four"


def parse_caption(caption: str) -> tuple[int, int]:
    """(parity, is_high) stated by a caption; fails if it states neither or both of a fact."""
    words = set(caption.split())
    parity = {"even", "odd"} & words
    assert len(parity) == 1, f"caption states no single parity: {caption!r}"
    low, high = bool(LOW_WORDS & words), bool(HIGH_WORDS & words)
    assert low != high, f"caption states no single magnitude: {caption!r}"
    return int(parity == {"odd"}), int(high)


def half_mask(side: str, h: int, w: int) -> torch.Tensor:
    """(h, w) bool mask of the half named ``side``."""
    m = torch.zeros(h, w, dtype=torch.bool)
    {"top": lambda: m[: h // 2].fill_(True), "bottom": lambda: m[h // 2 :].fill_(True),
     "left": lambda: m[:, : w // 2].fill_(True), "right": lambda: m[:, w // 2 :].fill_(True)}[side]()
    return m


@pytest.fixture(scope="module")
def dm():
    dm = CaptionedDigitsDataModule()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def inverse_vocab(dm):
    return {i: w for w, i in dm.vocab.items()}


def decode(tokens: torch.Tensor, inverse_vocab: dict[int, str]) -> str:
    return " ".join(inverse_vocab[int(t)] for t in tokens if int(t) != 0)


def test_batch_layout(dm):
    """Batches hold image (B,1,8,8) in [0,1], text (B,L) long, label (B,) long; the spec matches."""
    batch = next(iter(dm.dataloader("train", batch_size=16)))
    assert set(batch) == {"image", "text", "label"}
    assert batch["image"].shape == (16, 1, 8, 8) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    spec = dm.data_spec()
    assert batch["text"].shape == (16, spec.text_length) and batch["text"].dtype == torch.long
    assert batch["label"].shape == (16,) and batch["label"].dtype == torch.long
    assert spec.modalities == ("image", "text") and spec.num_classes == 10
    assert spec.vocab_size == len(dm.vocab) and int(batch["text"].max()) < spec.vocab_size


def test_captions_are_true(dm):
    """Every caption states the right parity and magnitude of its digit (all 1,797 samples)."""
    _, labels = load_digits_tensors()
    assert len(dm.captions) == len(labels)
    for caption, y in zip(dm.captions, labels.tolist()):
        assert parse_caption(caption) == (y % 2, int(y >= 5)), (caption, y)


def test_caption_for_is_true_for_every_label():
    """The helper alone, over many draws of the phrasing."""
    gen = torch.Generator().manual_seed(0)
    for y in range(10):
        for _ in range(20):
            assert parse_caption(caption_for(y, gen)) == (y % 2, int(y >= 5))


def test_text_tokens_decode_to_true_captions(dm, inverse_vocab):
    """Token ids decode (inverse vocab, padding dropped) to the captions, with no <unk>, and are true per split."""
    decoded_all = []
    for split in SPLITS:
        t = dm.split_tensors(split)
        for tokens, y in zip(t["text"], t["label"].tolist()):
            caption = decode(tokens, inverse_vocab)
            assert "<unk>" not in caption
            assert parse_caption(caption) == (y % 2, int(y >= 5))
            decoded_all.append(caption)
    assert sorted(decoded_all) == sorted(dm.captions)
    # Padding is only on the right.
    text = torch.cat([dm.split_tensors(s)["text"] for s in SPLITS])
    assert ((text != 0).int().diff(dim=1) <= 0).all()


@pytest.mark.parametrize("side", OCCLUSIONS)
def test_occlude_zeroes_exactly_the_named_half(side):
    """occlude() zeroes the named half of every channel and leaves the other half untouched."""
    images = torch.rand(3, 2, 8, 6) + 0.1  # no zeros, odd aspect
    out = occlude(images, torch.full((3,), OCCLUSIONS.index(side)))
    mask = half_mask(side, 8, 6)
    assert (out[..., mask] == 0).all()
    assert torch.equal(out[..., ~mask], images[..., ~mask])
    assert mask.sum() == 8 * 6 // 2


def test_half_occlusion_matches_raw_digits(dm):
    """Each image is its (digits-split) raw digit with exactly one half zeroed; all four sides occur."""
    raw_dm = DigitsDataModule()
    sides_seen = torch.zeros(len(OCCLUSIONS), dtype=torch.long)
    masks = [half_mask(side, 8, 8) for side in OCCLUSIONS]
    for split in SPLITS:
        got, raw = dm.split_tensors(split), raw_dm.split_tensors(split)
        assert torch.equal(got["label"], raw["label"])  # the split is that of digits
        for x, r in zip(got["image"][:, 0], raw["image"][:, 0]):
            matches = [k for k, m in enumerate(masks) if (x[m] == 0).all() and torch.equal(x[~m], r[~m])]
            assert matches, "image is not its raw digit with one half zeroed"
            assert not torch.equal(x, r) or not r.any(), "nothing was occluded"
            sides_seen[matches[0]] += 1
    assert (sides_seen > 0.15 * sides_seen.sum()).all(), sides_seen.tolist()


def test_no_occlusion_keeps_raw_digits():
    """occlusion='none' gives the digits images themselves."""
    full, raw = CaptionedDigitsDataModule(occlusion="none"), DigitsDataModule()
    assert torch.equal(full.split_tensors("test")["image"], raw.split_tensors("test")["image"])
    with pytest.raises(ValueError, match="occlusion"):
        CaptionedDigitsDataModule(occlusion="quarter")


def test_modalities_are_complementary(dm, inverse_vocab):
    """Logistic regression on image + caption group beats each modality alone by > 5 points on the test split."""
    from sklearn.linear_model import LogisticRegression

    def features(split):
        t = dm.split_tensors(split)
        groups = [parse_caption(decode(tokens, inverse_vocab)) for tokens in t["text"]]
        one_hot = np.eye(4)[[2 * p + h for p, h in groups]]
        return t["image"].flatten(1).numpy(), one_hot, t["label"].numpy()

    img_tr, txt_tr, y_tr = features("train")
    img_te, txt_te, y_te = features("test")

    def score(train_x, test_x):
        return LogisticRegression(max_iter=1000).fit(train_x, y_tr).score(test_x, y_te)

    image_only = score(img_tr, img_te)
    text_only = score(txt_tr, txt_te)
    fused = score(np.hstack([img_tr, txt_tr]), np.hstack([img_te, txt_te]))
    assert text_only <= 0.45  # the caption names a group of 2-3 digits only
    assert image_only < 0.95  # half a digit is ambiguous
    assert fused > max(image_only, text_only) + 0.05, (image_only, text_only, fused)
