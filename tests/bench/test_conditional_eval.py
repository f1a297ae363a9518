"""The evaluator's caption-conditioned path: cross-FID/KID, CLIP score, coherence and their real-data ceilings.

Everything runs on a tiny synthetic captioned dataset defined here (class k = a bright bar in rows 2k, 2k+1 of an
8×8 image; caption "a bar in position <k>"), with hand-made backbones whose behaviour is known exactly: a
nearest-prototype classifier and an image–text scorer that compares an image's bar position with the caption's.
Nothing here depends on the project's trained in-domain evaluators.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml

from bench.backbones import BACKBONES, FeatureBackbone
from bench.evaluate import Evaluator, applicable_metrics, generate_from_captions
from bench.features import to_uint8
from bench.metrics import METRICS
from bench.metrics.base import MetricContext
from bench.metrics.clip_score import CLIPScore
from bench.metrics.cross_modal import (
    CLIPScoreReal, Coherence, CoherenceReal, CrossFID, CrossKID, ImageClassifierBackbone, ImageTextScorer,
    caption_similarities, classifier_logits,
)
from bench.metrics.fid import FID
from bench.runner import extra_backbone_key, prepare
from bench.spec import EvalSpec, SpecError, parse_suite
from datamodules.base import BenchDataModule, DataSpec
from models.base import ImageGenerator, TextToImageGenerator

K, SIDE = 4, 8
WORDS = ("zero", "one", "two", "three")
VOCAB = {"<pad>": 0, "<unk>": 1, "a": 2, "bar": 3, "in": 4, "position": 5, **{w: 6 + i for i, w in enumerate(WORDS)}}
CONDITIONAL = ("cross-fid", "cross-kid", "clip-score", "coherence", "clip-score-real", "coherence-real")


def prototypes() -> torch.Tensor:
    """(K, 1, 8, 8): class k is a bar of ones in rows 2k and 2k+1 on a dark background."""
    protos = torch.full((K, 1, SIDE, SIDE), 0.1)
    for k in range(K):
        protos[k, :, 2 * k : 2 * k + 2, :] = 0.9
    return protos


def caption_of(label: int) -> str:
    return f"a bar in position {WORDS[label]}"


class BarsDataModule(BenchDataModule):
    """Synthetic captioned data: label i % 4, its prototype plus N(0, 0.03²) noise, its caption."""

    registry_name = "bars-test"
    sizes: ClassVar[dict[str, int]] = {"train": 16, "val": 8, "test": 40}

    def __init__(self, batch_size: int = 16) -> None:
        super().__init__(batch_size=batch_size)
        self.save_hyperparameters()

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(0)
        out, self.captions = {}, {}
        for split, n in self.sizes.items():
            labels = torch.arange(n) % K
            images = (prototypes()[labels] + 0.03 * torch.randn(n, 1, SIDE, SIDE, generator=gen)).clamp(0, 1)
            self.captions[split] = [caption_of(int(y)) for y in labels]
            text = torch.tensor([[VOCAB[w] for w in c.split()] for c in self.captions[split]])  # (n, 5)
            out[split] = {"image": images, "text": text, "label": labels}
        return out

    def caption_strings(self, split: str) -> list[str]:
        self.split_tensors(split)
        return list(self.captions[split])

    def data_spec(self) -> DataSpec:
        return DataSpec((1, SIDE, SIDE), K, vocab_size=len(VOCAB), text_length=5, modalities=("image", "text"))


# ----------------------------------------------------------------------------------------------------- models
class PrototypeT2I(TextToImageGenerator):
    """Draws the prototype of the caption's class plus seeded noise; ``wrong_odd`` draws class k+1 for odd k.

    Records every caption batch it was asked for in ``calls``.
    """

    family = "test"

    def __init__(self, wrong_odd: bool = False, noise: float = 0.03) -> None:
        super().__init__()
        self.wrong_odd, self.noise = wrong_odd, noise
        self.image_shape = (1, SIDE, SIDE)
        self.calls: list[int] = []

    def classes_of(self, text: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B,)
        k = text[:, 4] - VOCAB["zero"]
        return (k + (k % 2)) % K if self.wrong_odd else k

    def sample_from_text(self, text: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.calls.append(len(text))
        noise = torch.randn(len(text), 1, SIDE, SIDE, generator=generator) * self.noise
        return (prototypes()[self.classes_of(text.cpu())] + noise).clamp(0, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.randint(K, (n,), generator=generator)
        return (prototypes()[k] + torch.randn(n, 1, SIDE, SIDE, generator=generator) * self.noise).clamp(0, 1)


class NoiseT2I(PrototypeT2I):
    """Ignores the caption: uniform noise."""

    def sample_from_text(self, text: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.calls.append(len(text))
        return torch.rand(len(text), 1, SIDE, SIDE, generator=generator)


class UnconditionalOnly(ImageGenerator):
    family = "test"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(n, 1, SIDE, SIDE, generator=generator)


# -------------------------------------------------------------------------------------------------- backbones
def _bar_profile(images: torch.Tensor) -> torch.Tensor:
    """(B, C, 8, 8) uint8 → (B, K) mean intensity of each class's two rows, minus the image mean."""
    x = images.float().div(255).mean(dim=(1, 3))  # (B, 8) row means
    rows = x.view(len(x), K, 2).mean(-1)  # (B, K)
    return rows - rows.mean(-1, keepdim=True)


class AnchoredBackbone(FeatureBackbone):
    """A parameter-free network still needs one tensor for the feature path to find its device."""

    num_features, resize = K, "none-8"

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)


class RowPoolFeatures(AnchoredBackbone):
    """Feature backbone: the 8 row means and 8 column means of the image (16 features)."""

    num_features, weights_sha256 = 16, "0" * 64

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, 8, 8) uint8 -> (B, 16)
        x = images.float().div(255).mean(1)  # (B, 8, 8)
        return torch.cat([x.mean(2), x.mean(1)], dim=1)


class BarClip(AnchoredBackbone):
    """Image–text scorer: image embedding = bar profile; text embedding = one-hot of the caption's position word.
    Records the images it was given."""

    weights_sha256 = "c" * 64

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.last_num_truncated = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _bar_profile(images)

    def similarity(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:  # -> (B,)
        self.seen.append(images.clone())
        text = torch.zeros(len(captions), K)
        for i, c in enumerate(captions):
            text[i, WORDS.index(c.split()[-1])] = 1.0
        return torch.nn.functional.cosine_similarity(self.forward(images), text, dim=-1)


class NearestPrototype(AnchoredBackbone):
    """Classifier backbone: logits = minus the squared distance to each class prototype."""

    weights_sha256 = "d" * 64

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images)

    def classify(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) uint8 -> (B, K)
        x = images.float().div(255).flatten(1)  # (B, 64)
        return -torch.cdist(x, prototypes().flatten(1)).square()


TEST_BACKBONES = {"row-pool-test": RowPoolFeatures, "bar-clip-test": BarClip, "nearest-prototype-test": NearestPrototype}


@pytest.fixture
def registered_backbones(monkeypatch):
    """The test backbones registered for one test only (the registry is restored afterwards)."""
    for name, cls in TEST_BACKBONES.items():
        monkeypatch.setitem(BACKBONES._items, name, cls)
        monkeypatch.setattr(cls, "registry_name", name, raising=False)
    return TEST_BACKBONES


@pytest.fixture(autouse=True)
def _cache(tmp_cache):
    """Real-feature caches go to a temporary folder ($BENCH_CACHE_DIR)."""
    return tmp_cache


@pytest.fixture(scope="module")
def dm() -> BarsDataModule:
    module = BarsDataModule()
    module.setup()
    return module


def make_evaluator(metrics=CONDITIONAL, **eval_args) -> Evaluator:
    for name, cls in TEST_BACKBONES.items():
        cls.registry_name = name  # what the registry would set
    spec = EvalSpec(n_fake=eval_args.pop("n_fake", 1000), batch_size=eval_args.pop("batch_size", 16), kid_subsets=10,
                    kid_subset_size=20, **eval_args)
    return Evaluator(spec, tuple(metrics), RowPoolFeatures(), clip_backbone=BarClip(),
                     classifier_backbone=NearestPrototype())


def by_metric(scores) -> dict:
    return {s.metric: s for s in scores}


# ------------------------------------------------------------------------------------------------------ tests
def test_metrics_registered_with_their_input_kinds() -> None:
    expected = {
        "cross-fid": (CrossFID, "conditional_features", False), "cross-kid": (CrossKID, "conditional_features", False),
        "clip-score": (CLIPScore, "image_text", False), "clip-score-real": (CLIPScoreReal, "image_text", True),
        "coherence": (Coherence, "conditional_logits", False), "coherence-real": (CoherenceReal, "conditional_logits", True),
    }
    for name, (cls, kind, on_reference) in expected.items():
        assert METRICS.get(name) is cls and cls.input_kind == kind and cls.on_reference_data is on_reference
    assert METRICS.get("cross-fid").higher_is_better is False and METRICS.get("coherence").higher_is_better is True


def test_good_generator_ranks_above_noise(dm) -> None:
    """Every conditional metric ranks the caption-faithful generator above the one that draws noise; the real-data
    rows are the same for both and are the ceiling the good generator reaches."""
    good = by_metric(make_evaluator().evaluate(PrototypeT2I(), dm, seed=0))
    bad = by_metric(make_evaluator().evaluate(NoiseT2I(), dm, seed=0))
    assert set(good) == set(CONDITIONAL) == set(bad)
    assert good["cross-fid"].value < bad["cross-fid"].value
    assert good["cross-kid"].value < bad["cross-kid"].value
    assert good["clip-score"].value > bad["clip-score"].value + 30
    assert good["coherence"].value == 1.0 and bad["coherence"].value < 0.6
    for real in ("clip-score-real", "coherence-real"):
        assert good[real].value == bad[real].value
    assert good["coherence-real"].value == 1.0
    assert good["clip-score"].value == pytest.approx(good["clip-score-real"].value, abs=3.0)
    # Half the captions drawn as the wrong class: strictly between the two on every conditional metric.
    half = by_metric(make_evaluator().evaluate(PrototypeT2I(wrong_odd=True), dm, seed=0))
    for name in ("cross-fid", "cross-kid"):
        assert good[name].value < half[name].value < bad[name].value
    for name in ("clip-score", "coherence"):
        assert good[name].value > half[name].value > bad[name].value


def test_rows_record_protocol_backbone_and_counts(dm) -> None:
    scores = by_metric(make_evaluator(n_fake=30).evaluate(PrototypeT2I(), dm, seed=0))
    fid, clip, coh = scores["cross-fid"], scores["clip-score"], scores["coherence"]
    assert "conditioned_on=captions of test" in fid.protocol and fid.n_fake == 30 and fid.n_real == 40
    assert fid.backbone == "row-pool-test" and fid.resize == "none-8"
    assert clip.backbone == "bar-clip-test" and clip.backbone_sha256 == "c" * 64 and clip.n_fake == 30
    assert "conditioned_on=captions of test" in clip.protocol and "clip_backbone=bar-clip-test" in clip.protocol
    assert coh.backbone == "nearest-prototype-test" and "classifier=nearest-prototype-test" in coh.protocol
    assert f"classifier_sha256={'d' * 64}" in coh.protocol and coh.n_real == 30
    for real in ("clip-score-real", "coherence-real"):
        assert scores[real].n_fake is None and scores[real].n_real == 30 and "real images of test" in scores[real].protocol
        assert "conditioned_on" not in scores[real].protocol


def test_coherence_equals_hand_computed_accuracy(dm) -> None:
    """A generator that draws class k+1 for odd k: coherence = fraction of even labels among the first n_fake."""
    n = 30
    labels = dm.split_tensors("test")["label"][:n]
    expected = sum(1 for y in labels.tolist() if y % 2 == 0) / n
    scores = by_metric(make_evaluator(("coherence",), n_fake=n).evaluate(PrototypeT2I(wrong_odd=True), dm, seed=3))
    assert scores["coherence"].value == pytest.approx(expected, abs=1e-12)
    assert expected not in (0.0, 1.0)


def test_clip_score_real_pairs_above_shuffled(dm) -> None:
    """On real images, matching captions score far higher than the same captions shuffled; the evaluator's
    clip-score-real row equals 100·mean(max(cos, 0)) of the backbone's cosines written out by hand."""
    images = to_uint8(dm.split_tensors("test")["image"])
    captions = dm.caption_strings("test")
    clip = BarClip()
    cos, truncated = caption_similarities(clip, images, captions, batch_size=7)
    shuffled, _ = caption_similarities(clip, images, captions[1:] + captions[:1], batch_size=7)
    real, mixed = CLIPScore(), CLIPScore()
    real.update(cos, num_truncated=truncated)
    mixed.update(shuffled)
    assert real.compute() > mixed.compute() + 50 and truncated == 0
    by_hand = sum(100 * max(float(c), 0.0) for c in cos) / len(cos)
    row = by_metric(make_evaluator(("clip-score-real",)).evaluate(NoiseT2I(), dm, seed=0))["clip-score-real"]
    assert row.value == pytest.approx(by_hand, rel=1e-6)


def test_images_generated_once_seeded_and_quantized_like_features(dm) -> None:
    """One pass of sample_from_text over the first n captions serves every conditional metric; the backbones get
    exactly to_uint8 of what the model drew with a generator seeded by the run seed; same seed, same scores."""
    model = PrototypeT2I(noise=0.2)
    evaluator = make_evaluator(("cross-fid", "cross-kid", "clip-score", "coherence"), n_fake=25, batch_size=10)
    first = evaluator.evaluate(model, dm, seed=5)
    assert model.calls == [10, 10, 5]
    text = dm.split_tensors("test")["text"][:25]
    expected = to_uint8(model.sample_from_text(text, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(torch.cat(evaluator.clip_backbone.seen), expected)
    assert torch.equal(generate_from_captions(model, text, 25, seed=5), expected)
    again = make_evaluator(("cross-fid", "cross-kid", "clip-score", "coherence"), n_fake=25).evaluate(model, dm, seed=5)
    assert [s.value for s in first] == [s.value for s in again]
    other = make_evaluator(("clip-score",), n_fake=25).evaluate(model, dm, seed=6)
    assert other[0].value != by_metric(first)["clip-score"].value


def test_only_real_rows_do_not_generate(dm) -> None:
    model = PrototypeT2I()
    make_evaluator(("clip-score-real", "coherence-real")).evaluate(model, dm, seed=0)
    assert model.calls == []


def test_conditional_metrics_apply_only_to_text_to_image_models() -> None:
    names = [*CONDITIONAL, "fid"]
    assert applicable_metrics(UnconditionalOnly(), names) == ["fid"]
    assert applicable_metrics(PrototypeT2I(), names) == names


def test_missing_backbone_on_the_evaluator_is_a_clear_error(dm) -> None:
    spec = EvalSpec(batch_size=16)
    with pytest.raises(ValueError, match="eval.clip_backbone"):
        Evaluator(spec, ("clip-score",), None).evaluate(PrototypeT2I(), dm, seed=0)
    with pytest.raises(ValueError, match="eval.classifier_backbone"):
        Evaluator(spec, ("coherence",), None).evaluate(PrototypeT2I(), dm, seed=0)


def test_metric_units() -> None:
    """cross-fid is fid's math; coherence counts top-1 hits and refuses a classifier with the wrong class count."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g) + 0.5
    a, b = CrossFID.build(MetricContext(num_features=3, real_split="val")), FID(num_features=3)
    for m in (a, b):
        m.update(real, real=True)
        m.update(fake, real=False)
    assert a.compute().item() == b.compute().item()
    assert a.protocol().startswith("conditioned_on=captions of val,")
    assert CrossKID.build(MetricContext(real_split="train")).protocol().startswith("conditioned_on=captions of train")
    coh = Coherence.build(MetricContext(num_classes=3))
    coh.update(torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 0, 1], [5, 0, 0]]), torch.tensor([0, 2, 2, 1]))
    assert coh.compute().item() == 0.5
    with pytest.raises(ValueError, match="predicts 2 classes but the dataset has 3"):
        coh.update(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))


def test_backbone_interfaces_and_batched_helpers() -> None:
    assert isinstance(BarClip(), ImageTextScorer) and not isinstance(NearestPrototype(), ImageTextScorer)
    assert isinstance(NearestPrototype(), ImageClassifierBackbone) and not isinstance(BarClip(), ImageClassifierBackbone)
    images = to_uint8(prototypes())
    assert torch.equal(classifier_logits(NearestPrototype(), images, 3).argmax(1), torch.arange(K))
    with pytest.raises(ValueError, match="in pairs"):
        caption_similarities(BarClip(), images, ["a bar in position zero"], 2)


# ------------------------------------------------------------------------------------------------ caption strings
def test_captioned_digits_caption_strings_match_the_tokens() -> None:
    from datamodules.captioned_digits import CaptionedDigitsDataModule, tokenize

    digits = CaptionedDigitsDataModule()
    for split in ("train", "test"):
        captions = digits.caption_strings(split)
        assert tokenize(captions, digits.vocab, digits.text_length).equal(digits.split_tensors(split)["text"])


def test_captioned_fashion_caption_strings_match_the_tokens(tmp_path) -> None:
    from datamodules.captioned_digits import tokenize
    from datamodules.captioned_fashion import CaptionedFashionMNISTDataModule
    from tests.datamodules.test_fashion_mnist import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    fashion = CaptionedFashionMNISTDataModule(data_dir=str(tmp_path), val_size=2)
    for split in ("train", "val", "test"):
        captions = fashion.caption_strings(split)
        assert len(captions) == len(fashion.split_tensors(split)["label"])
        assert tokenize(captions, fashion.vocab, fashion.text_length).equal(fashion.split_tensors(split)["text"])
    with pytest.raises(ValueError, match="unknown split"):
        fashion.caption_strings("dev")


# ------------------------------------------------------------------------------------------ suite validation
def suite(metrics: list[str], eval_block: dict, datamodule: str = "captioned-digits") -> dict:
    return {
        "name": "t2i", "seeds": [0], "eval": {"n_fake": 8, "batch_size": 8, **eval_block},
        "tracks": [{"name": "t", "primary_metric": metrics[0], "metrics": metrics,
                    "datamodules": {datamodule: {}}, "models": {"vae": {"latent_dim": 2}}}],
    }


def test_missing_clip_backbone_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_suite(suite(["mse", "clip-score"], {}), "s.yaml")
    message = str(info.value)
    assert "s.yaml" in message and "tracks[0].eval.clip_backbone" in message and "clip-score" in message
    with pytest.raises(SpecError, match="tracks\\[0\\].eval.classifier_backbone.*coherence-real"):
        parse_suite(suite(["mse", "coherence-real"], {}), "s.yaml")


def test_unknown_extra_backbone_lists_valid_backbones() -> None:
    with pytest.raises(SpecError) as info:
        parse_suite(suite(["mse", "clip-score"], {"clip_backbone": "openai-clip-9000"}), "s.yaml")
    assert "openai-clip-9000" in str(info.value) and all(n in str(info.value) for n in BACKBONES.names())
    with pytest.raises(SpecError, match="classifier_backbone.*unknown backbone 'nope'"):  # checked even if unused
        parse_suite(suite(["mse"], {"classifier_backbone": "nope"}), "s.yaml")


def test_prepare_builds_the_extra_backbones(registered_backbones) -> None:
    spec = parse_suite(
        suite(["mse", "clip-score", "coherence"],
              {"clip_backbone": "bar-clip-test", "classifier_backbone": "nearest-prototype-test"}),
        "s.yaml",
    )
    _, backbones = prepare(spec)
    assert isinstance(backbones[extra_backbone_key("bar-clip-test")], BarClip)
    assert isinstance(backbones[extra_backbone_key("nearest-prototype-test")], NearestPrototype)


def test_prepare_rejects_wrong_interface_and_uncaptioned_data(registered_backbones) -> None:
    wrong = parse_suite(suite(["mse", "clip-score"], {"clip_backbone": "nearest-prototype-test"}), "s.yaml")
    with pytest.raises(SpecError, match="clip_backbone.*has no similarity"):
        prepare(wrong)
    wrong = parse_suite(suite(["mse", "coherence"], {"classifier_backbone": "row-pool-test"}), "s.yaml")
    with pytest.raises(SpecError, match="classifier_backbone.*has no classify"):
        prepare(wrong)
    uncaptioned = parse_suite(suite(["mse", "clip-score"], {"clip_backbone": "bar-clip-test"}, "digits"), "s.yaml")
    with pytest.raises(SpecError, match="no caption strings"):
        prepare(uncaptioned)


def test_cli_exits_2_on_missing_clip_backbone(tmp_path: Path, capsys) -> None:
    from bench.cli import main

    path = tmp_path / "t2i.yaml"
    path.write_text(yaml.safe_dump(suite(["mse", "clip-score"], {})))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "clip_backbone" in err and not (tmp_path / "out").exists()


def test_eval_spec_fields_default_to_none() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(EvalSpec)}
    assert fields["clip_backbone"] is None and fields["classifier_backbone"] is None
