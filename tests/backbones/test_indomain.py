"""bench.backbones.indomain and bench.evaluators: the in-domain evaluators (CLIP-style and classifiers).

Tiny evaluator files are trained here for 0-2 steps through the real training functions and loaded through the
real backbone path; the shipped files are checked against their pinned sha256 and for real quality on a few
hundred real test images (nothing is retrained).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.backbones import BACKBONES, BackboneWeightsError
from bench.backbones import indomain
from bench.backbones.build import build_backbone
from bench.backbones.indomain import ClassifierInDomain, ClipInDomainFashion, load_evaluator_file
from bench.evaluators import train as ev
from bench.evaluators.networks import ContrastiveConfig, ContrastiveImageText, WordTokenizer, contrastive_loss
from bench.metrics.clip_score import CLIPScore

CLIP, FASHION, DIGITS = "clip-indomain-fashion", "classifier-indomain-fashion", "classifier-indomain-digits"
TINY_CLIP = {"widths": (8, 8), "text": {"width": 16, "layers": 1, "heads": 2}, "embed_dim": 16, "batch_size": 16}
TINY_CLASSIFIER = {"widths": (8, 8), "batch_size": 16}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _uint8(images: torch.Tensor) -> torch.Tensor:  # (N, 1, S, S) in [0, 1] -> uint8
    return images.mul(255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def fashion() -> dict[str, ev.Split]:
    """The real captioned Fashion-MNIST (train and test), as the training module loads it; the tests that need it
    skip where neither the Debian package nor ``$FASHION_MNIST_DIR`` provides the files (CI installs the package)."""
    import os

    from datamodules import fashion_mnist as fm

    folders = [Path(p) for p in (os.environ.get("FASHION_MNIST_DIR"),) if p] + [fm.DEBIAN_DIR]
    if not any((f / "train-images-idx3-ubyte.gz").exists() for f in folders):
        pytest.skip("the real Fashion-MNIST is absent: apt-get install dataset-fashion-mnist (or set FASHION_MNIST_DIR)")
    return ev.load_splits("captioned-fashion-mnist")


@pytest.fixture(scope="module")
def digits() -> dict[str, ev.Split]:
    return ev.load_splits("captioned-digits")


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory, fashion) -> Path:
    """A tiny CLIP evaluator trained for 2 steps on 32 real captioned images."""
    path = tmp_path_factory.mktemp("tiny-clip") / "tiny-clip.pt"
    ev.train_evaluator(
        CLIP, out=path, epochs=1, seed=0, train_limit=32, eval_limit=48, max_steps=2, overrides=TINY_CLIP,
        splits=fashion, log=lambda _: None,
    )
    return path


@pytest.fixture(scope="module")
def tiny_classifier_file(tmp_path_factory, digits) -> Path:
    """A tiny digits classifier left at its random initialization (0 steps)."""
    path = tmp_path_factory.mktemp("tiny-cls") / "tiny-digits.pt"
    ev.train_evaluator(
        DIGITS, out=path, epochs=1, seed=0, train_limit=32, max_steps=0, overrides=TINY_CLASSIFIER,
        splits=digits, log=lambda _: None,
    )
    return path


# ------------------------------------------------------------------------------------------------ networks
def test_contrastive_loss_is_clips_symmetric_infonce_when_groups_are_distinct():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0)) * 3
    target = torch.arange(6)
    reference = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(contrastive_loss(logits), reference)
    torch.testing.assert_close(contrastive_loss(logits, torch.tensor([5, 3, 1, 0, 2, 4])), reference)


def test_contrastive_loss_counts_same_group_pairs_as_positives():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 1.5, -1.0], [0.0, 0.3, 1.0]])
    groups = torch.tensor([7, 7, 1])  # items 0 and 1 share a caption meaning
    lp_rows, lp_cols = logits.log_softmax(1), logits.T.log_softmax(1)
    # hand computation: rows 0 and 1 put weight 1/2 on columns 0 and 1; row 2 on column 2 only
    by_hand = lambda lp: -((lp[0, 0] + lp[0, 1]) / 2 + (lp[1, 0] + lp[1, 1]) / 2 + lp[2, 2]) / 3  # noqa: E731
    torch.testing.assert_close(contrastive_loss(logits, groups), 0.5 * (by_hand(lp_rows) + by_hand(lp_cols)))


def test_word_tokenizer_pads_truncates_and_maps_unknown_words():
    words = WordTokenizer.build(["a Large coat", "a small coat"])
    assert words == ["<pad>", "<unk>", "a", "coat", "large", "small"]
    tok = WordTokenizer(words, length=3)
    ids = tok.encode(["A small coat", "a purple coat of wool", ""])
    assert ids.tolist() == [[2, 5, 3], [2, 1, 3], [0, 0, 0]]
    with pytest.raises(TypeError, match="list of strings"):
        tok.encode("a coat")


def test_fashion_attributes_read_class_size_and_tone_off_every_template():
    caps = ["a large dark ankle boot", "a photo of a small , light t-shirt", "grey shirt , medium",
            "the sandal is small and dark"]
    assert ev.fashion_attributes(caps).tolist() == [[9, 2, 0], [0, 0, 2], [6, 1, 1], [5, 0, 0]]
    with pytest.raises(ValueError, match="one class"):
        ev.fashion_attributes(["a large coat"])


def test_training_is_deterministic_and_records_its_provenance(tmp_path, digits):
    paths = [tmp_path / f"run{i}.pt" for i in range(2)]
    for p in paths:
        out = ev.train_evaluator(DIGITS, out=p, epochs=1, seed=3, train_limit=48, max_steps=2,
                                 overrides=TINY_CLASSIFIER, splits=digits, log=lambda _: None)
    assert _sha(paths[0]) == _sha(paths[1]) == out["sha256"]
    payload = torch.load(paths[0], weights_only=True)
    assert payload["trained_with"]["command"] == "python -m bench.evaluators train classifier-indomain-digits --epochs 1 --seed 3"
    assert payload["trained_with"]["steps"] == 2 and payload["trained_with"]["n_train"] == 48
    assert 0.0 <= payload["validation"]["accuracy"] <= 1.0


# --------------------------------------------------------------------------------------- loading path
def test_backbones_are_registered_under_indomain_names():
    for name in (CLIP, FASHION, DIGITS):
        assert name in BACKBONES.names()
        assert "indomain" in name  # never mistaken for OpenAI's CLIP


def test_tiny_clip_file_loads_through_build_backbone_and_matches_the_network(tiny_clip_file, fashion):
    backbone = build_backbone(CLIP, weights_path=str(tiny_clip_file))
    assert isinstance(backbone, ClipInDomainFashion)
    assert backbone.weights_sha256 == _sha(tiny_clip_file)
    assert backbone.resize == "bilinear-28" and backbone.num_features == 16
    test = fashion["test"].head(8)
    images = _uint8(test.images)  # (8, 1, 28, 28)
    emb = backbone(images)
    assert emb.shape == (8, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(8))

    payload = torch.load(tiny_clip_file, weights_only=True)  # the same network built by hand
    net = ContrastiveImageText(ContrastiveConfig.from_dict(payload["arch"]))
    net.load_state_dict(payload["state_dict"])
    net.eval()
    tok = WordTokenizer(payload["vocab"], payload["text_length"])
    with torch.no_grad():
        expected = (net.encode_image(images.float() / 255) * net.encode_text(tok.encode(test.captions))).sum(-1)
    torch.testing.assert_close(backbone.similarity(images, test.captions), expected)

    metric = CLIPScore()  # the clip-score metric is fed exactly as from clip-vit-b-32
    metric.update(backbone.similarity(images, test.captions), backbone.last_num_truncated)
    assert 0.0 <= float(metric.compute()) <= 100.0


def test_clip_backbone_counts_truncated_captions_and_checks_pairs(tiny_clip_file):
    backbone = build_backbone(CLIP, weights_path=str(tiny_clip_file))
    long = " ".join(["dark"] * (backbone.context_length + 3))
    with pytest.warns(UserWarning, match="truncated"):
        backbone.encode_text(["a dark coat", long])
    assert backbone.last_num_truncated == 1
    with pytest.raises(ValueError, match="in pairs"):
        backbone.similarity(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), ["a dark coat"])


def test_inputs_must_be_uint8_and_other_sizes_and_rgb_are_converted(tiny_classifier_file):
    backbone = build_backbone(DIGITS, weights_path=str(tiny_classifier_file))
    with pytest.raises(ValueError, match="uint8"):
        backbone(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        backbone(torch.zeros(2, 2, 8, 8, dtype=torch.uint8))
    small = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    big = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (3, 1, 16, 16): each pixel 2×2
    # bilinear 2× downsampling of 2×2 blocks gives back the block value: same features
    torch.testing.assert_close(backbone(big), backbone(small))
    torch.testing.assert_close(backbone(small.expand(-1, 3, -1, -1)), backbone(small), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="8x8"):
        build_backbone(DIGITS, size=16, weights_path=str(tiny_classifier_file))


def test_classifier_features_and_logits_shapes_and_consistency(tiny_classifier_file):
    backbone = build_backbone(DIGITS, weights_path=str(tiny_classifier_file))
    assert isinstance(backbone, ClassifierInDomain) and not backbone.training
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    features, logits = backbone.features_and_logits(images)
    assert features.shape == (5, backbone.num_features) == (5, 8) and logits.shape == (5, 10)
    torch.testing.assert_close(backbone(images), features)
    torch.testing.assert_close(backbone.classify(images), logits)


def test_missing_file_gives_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(BackboneWeightsError, match="does not exist.*python -m bench.evaluators train"):
        build_backbone(CLIP, weights_path=str(tmp_path / "nope.pt"))
    monkeypatch.setattr(indomain, "WEIGHTS_DIR", tmp_path)  # the shipped file is gone
    with pytest.raises(BackboneWeightsError, match="shipped weights file .* does not exist"):
        build_backbone(FASHION)


def test_sha256_mismatch_with_the_pin_is_refused(tmp_path, monkeypatch, tiny_clip_file):
    shutil.copy(tiny_clip_file, tmp_path / f"{CLIP}.pt")  # another file in place of the shipped one
    monkeypatch.setattr(indomain, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(BackboneWeightsError, match=f"sha256 {_sha(tiny_clip_file)}, but the pinned sha256 is"):
        build_backbone(CLIP)
    # the same file given explicitly is accepted and its own hash recorded
    assert build_backbone(CLIP, weights_path=str(tmp_path / f"{CLIP}.pt")).weights_sha256 == _sha(tiny_clip_file)


def test_a_file_of_another_evaluator_or_not_an_evaluator_is_refused(tmp_path, tiny_clip_file):
    with pytest.raises(BackboneWeightsError, match="holds the evaluator 'clip-indomain-fashion'"):
        build_backbone(FASHION, weights_path=str(tiny_clip_file))
    state = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state)
    with pytest.raises(BackboneWeightsError, match="not an evaluator file"):
        build_backbone(FASHION, weights_path=str(state))
    text = tmp_path / "junk.pt"
    text.write_text("not a torch file")
    with pytest.raises(BackboneWeightsError, match="weights_only=True"):
        build_backbone(FASHION, weights_path=str(text))


def test_leaderboard_is_written_from_the_weights_files(tmp_path, tiny_clip_file):
    shutil.copy(tiny_clip_file, tmp_path / f"{CLIP}.pt")
    sha = _sha(tiny_clip_file)
    rows = ev.write_leaderboard(tmp_path, tmp_path / "e.csv", tmp_path / "e.md", new_wall_times={sha: 12.0})
    metrics = {r["metric"]: r for r in rows}
    assert {"i2t_top1", "t2i_p@10", "i2t_top1_class", "cos_matched"} <= metrics.keys()
    assert metrics["i2t_top1"]["sha256"] == sha and metrics["i2t_top1"]["wall_s"] == "12"
    md = (tmp_path / "e.md").read_text()
    assert sha in md and "python -m bench.evaluators train clip-indomain-fashion" in md
    # a report without new wall times keeps the recorded one
    assert ev.write_leaderboard(tmp_path, tmp_path / "e.csv", tmp_path / "e.md")[0]["wall_s"] == "12"


# ------------------------------------------------------------------------------------------ shipped files
@pytest.mark.parametrize("name", [CLIP, FASHION, DIGITS])
def test_shipped_files_match_their_pinned_sha256(name):
    payload, sha, _ = load_evaluator_file(name)
    assert sha == indomain.PINNED_SHA256[name] and payload["name"] == name
    assert (indomain.WEIGHTS_DIR / f"{name}.pt").stat().st_size < 2_000_000
    assert payload["trained_with"]["limits"]["max_steps"] is None  # a full run, not a test file


def test_shipped_clip_scores_matching_pairs_above_mismatched_ones(fashion):
    backbone = build_backbone(CLIP)
    test = fashion["test"].head(300)
    images = _uint8(test.images)
    attrs = ev.fashion_attributes(test.captions)  # (300, 3)
    shift = torch.roll(torch.arange(300), 7)
    mismatched_caps = [test.captions[int(j)] for j in shift]
    differ = (attrs != attrs[shift]).any(1)  # pairs whose rolled caption states something else
    matched, mismatched = backbone.similarity(images, test.captions), backbone.similarity(images, mismatched_caps)
    assert matched.mean() > mismatched[differ].mean() + 0.2
    assert (matched > mismatched)[differ].float().mean() > 0.8

    distinct = sorted(set(test.captions))  # image->text top-1 over the distinct captions (same meaning = correct)
    best = (backbone(images) @ backbone.encode_text(distinct).T).argmax(1)
    correct = (ev.fashion_attributes(distinct)[best] == attrs).all(1).float().mean()
    chance = (attrs[:, None, :] == ev.fashion_attributes(distinct)[None]).all(-1).float().mean()
    assert correct > 5 * chance

    scores = {}
    for key, caps in (("matched", test.captions), ("mismatched", mismatched_caps)):
        metric = CLIPScore()
        metric.update(backbone.similarity(images, caps), backbone.last_num_truncated)
        scores[key] = float(metric.compute())
    assert scores["matched"] > scores["mismatched"]


def test_shipped_fashion_classifier_is_accurate(fashion):
    backbone = build_backbone(FASHION)
    test = fashion["test"].head(400)
    accuracy = (backbone.classify(_uint8(test.images)).argmax(1) == test.labels).float().mean()
    assert accuracy > 0.8  # chance 0.1


def test_shipped_digits_classifier_is_accurate_on_half_occluded_digits(digits):
    backbone = build_backbone(DIGITS)
    test = digits["test"]  # 359 images
    features, logits = backbone.features_and_logits(_uint8(test.images))
    assert features.shape == (len(test.images), backbone.num_features)
    assert (logits.argmax(1) == test.labels).float().mean() > 0.7  # chance 0.1
