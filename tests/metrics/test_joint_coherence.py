"""joint-coherence / joint-coherence-real: the caption parser of captioned-digits, the metric against hand counts,
the real-pair ceiling with the shipped digits classifier, and a tiny trained mvae-late through the providers.

The parser is checked against an independent reading of each template string (which parity and magnitude words it
holds), every real caption of the dataset against its label, and a list of near-miss token sequences.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from bench.backbones.build import build_backbone
from bench.errors import InputError
from bench.evaluate import Evaluator, applicable_metrics
from bench.features import to_uint8
from bench.metrics import requests as rq
from bench.metrics import joint_coherence as joint_coherence_module
from bench.metrics.base import MetricContext
from bench.metrics.cross_modal import classifier_logits
from bench.metrics.joint_coherence import (
    CaptionLabels, JointCoherence, JointCoherenceReal, joint_coherence, joint_coherence_counts,
)
from bench.metrics.registry import METRICS
from bench.providers import ModelSubject, UnitInputs, sample_joint_pairs
from bench.spec import EvalSpec
from datamodules.captioned_digits import (
    _MAGNITUDE, _PARITY, _TEMPLATES, PAD, UNK, CaptionedDigitsDataModule, all_captions, digit_group, tokenize,
)
from models import MODELS

LOW_WORDS = {"below", "smaller", "under"}  # the magnitude phrasings' words, read independently of the module
HIGH_WORDS = {"least", "more", "above"}
GROUPS = {(0, 0): {0, 2, 4}, (1, 0): {1, 3}, (1, 1): {5, 7, 9}, (0, 1): {6, 8}}  # (odd, high) -> digits


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dm() -> CaptionedDigitsDataModule:
    dm = CaptionedDigitsDataModule()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def classifier():
    return build_backbone("classifier-indomain-digits", None, None)


def ids(dm: CaptionedDigitsDataModule, *captions: str, length: int | None = None) -> torch.Tensor:
    return tokenize(list(captions), dm.vocab, length or dm.text_length)


def one_hot_logits(classes: list[int], k: int = 10) -> torch.Tensor:
    logits = torch.randn(len(classes), k, generator=torch.Generator().manual_seed(0))
    logits[torch.arange(len(classes)), torch.tensor(classes)] = 50.0
    return logits


# ------------------------------------------------------------------------------------------------------ parser
def every_template_string() -> list[str]:
    return [t.format(parity=p, magnitude=m) for t in _TEMPLATES for p in _PARITY.values()
            for phrasings in _MAGNITUDE.values() for m in phrasings]


def stated_group(caption: str) -> set[int]:
    words = set(caption.split())
    odd, high = "odd" in words, bool(HIGH_WORDS & words)
    assert odd != ("even" in words) and high != bool(LOW_WORDS & words), caption
    return GROUPS[(int(odd), int(high))]


def test_every_template_string_parses_to_the_group_it_states(dm) -> None:
    captions = every_template_string()
    assert len(captions) == len(set(captions)) == 48 == len(all_captions())
    sets = dm.caption_label_sets(ids(dm, *captions))
    for caption, got in zip(captions, sets):
        assert got == stated_group(caption), caption
    # also with more trailing padding than the dataset's length, and with none at all
    assert dm.caption_label_sets(ids(dm, *captions, length=dm.text_length + 6)) == sets
    exact = [dm.caption_label_sets(ids(dm, c, length=len(c.split())))[0] for c in captions]
    assert exact == sets


def test_every_real_caption_allows_its_label_and_only_its_group(dm) -> None:
    for split in ("train", "val", "test"):
        tensors = dm.split_tensors(split)
        sets = dm.caption_label_sets(tensors["text"])
        assert [s == digit_group(int(y)) for s, y in zip(sets, tensors["label"])] == [True] * len(sets)
        assert all(int(y) in s for s, y in zip(sets, tensors["label"]))
    assert sorted(sorted(g) for g in {digit_group(d) for d in range(10)}) == sorted(sorted(g) for g in GROUPS.values())


@pytest.mark.parametrize("caption", [
    "",  # all padding
    "an even digit",  # a fact missing
    "an even digit below",  # a phrasing cut short
    "an even digit below five five",  # a word too many
    "an odd even digit below five",  # two parities
    "digit an even below five",  # wrong order
    "below five and even digit",  # two templates mixed
    "the number shown is even below five",  # the comma missing
    "this digit is odd and under four",  # a phrasing the templates never use
    "an even digit below five and odd",
])
def test_near_miss_token_sequences_are_invalid(dm, caption: str) -> None:
    assert dm.caption_label_sets(ids(dm, caption)) == [None]


def test_padding_or_unknown_inside_a_caption_is_invalid(dm) -> None:
    good = ids(dm, "an even digit below five")[0]  # 5 words, then padding
    assert dm.caption_label_sets(good[None]) == [frozenset({0, 2, 4})]
    inner_pad = torch.cat([good[:2], torch.tensor([PAD]), good[2:-1]])  # "an even <pad> digit below five"
    leading_pad = torch.cat([torch.tensor([PAD]), good[:-1]])
    unknown = good.clone()
    unknown[5] = UNK  # "an even digit below five <unk>"
    garbage_after = good.clone()
    garbage_after[7] = dm.vocab["odd"]  # a word after the padding
    rows = torch.stack([inner_pad, leading_pad, unknown, garbage_after])
    assert dm.caption_label_sets(rows) == [None] * 4
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        dm.caption_label_sets(good)


# ------------------------------------------------------------------------------------------------------ metric
def test_joint_coherence_by_hand() -> None:
    """Six pairs: argmax 0 ∈ {0,2,4} yes, 3 ∈ {1,3} yes, 6 ∈ {5,7,9} no, invalid caption no, 2 ∈ {6,8} no,
    5 ∈ {5,7,9} yes: 3 coherent of 6, 5 valid."""
    logits = one_hot_logits([0, 3, 6, 9, 2, 5])
    sets = [frozenset({0, 2, 4}), frozenset({1, 3}), frozenset({5, 7, 9}), None, frozenset({6, 8}),
            frozenset({5, 7, 9})]
    assert joint_coherence_counts(logits, sets) == (3, 5, 6)
    assert joint_coherence(logits, sets).item() == 0.5
    metric = JointCoherence.build(MetricContext(num_classes=10))
    metric.update(logits[:4], sets[:4])  # two batches: the same counts
    metric.update(logits[4:], sets[4:])
    assert metric.compute().item() == 0.5
    assert metric.values("joint-coherence")["valid-captions"].value == pytest.approx(5 / 6)
    assert "samples=6" in metric.protocol() and "5/6" not in metric.protocol()  # an outcome, not the protocol


def test_independent_balanced_pairs_score_the_stated_chance() -> None:
    """Every predicted digit crossed with the caption of every digit (independent, valid, class-balanced):
    Σ_g (|g|/10)² = 0.26, the chance level of the docstring."""
    preds = [p for p in range(10) for _ in range(10)]
    sets = [digit_group(y) for _ in range(10) for y in range(10)]
    assert joint_coherence(one_hot_logits(preds), sets).item() == pytest.approx(0.26, abs=1e-15)
    assert "= 0.26" in joint_coherence_module.__doc__  # the chance the module docstring states


def test_class_path_requests_feed_and_protocol() -> None:
    assert METRICS.get("joint-coherence") is JointCoherence
    assert METRICS.get("joint-coherence-real") is JointCoherenceReal
    assert JointCoherence.higher_is_better is JointCoherenceReal.higher_is_better is True
    assert JointCoherenceReal.on_reference_data and not JointCoherence.on_reference_data
    metric = JointCoherence.build(MetricContext(num_classes=10))
    assert metric.requests() == (rq.ClassifierLogits("joint"), rq.CaptionLabelSets("joint"))
    assert JointCoherenceReal.build(MetricContext()).requests() == (rq.ClassifierLogits("joint-real"),
                                                                   rq.CaptionLabelSets("joint-real"))
    assert rq.backbone_fields(metric.requests()) == {"classifier_backbone"}
    metric.feed({rq.ClassifierLogits("joint"): one_hot_logits([1, 4, 8]),
                 rq.CaptionLabelSets("joint"): CaptionLabels([frozenset({1, 3}), None, frozenset({6, 8})],
                                                             "some rule")})
    values = metric.values("joint-coherence")
    assert list(values) == ["joint-coherence", "valid-captions"]
    assert values["joint-coherence"].value == pytest.approx(2 / 3)  # 1 in {1, 3}, 8 in {6, 8}; one invalid
    assert values["valid-captions"].value == pytest.approx(2 / 3)
    protocol = metric.protocol()
    assert "valid=some rule" in protocol
    assert all("=" in part for part in protocol.split(","))


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="no \\(image, caption\\) pairs"):
        JointCoherence().compute()
    with pytest.raises(ValueError, match="3 images but 2 captions"):
        JointCoherence().update(one_hot_logits([0, 1, 2]), [None, None])
    with pytest.raises(ValueError, match="predicts 4 classes but the dataset has 10"):
        JointCoherence(num_classes=10).update(one_hot_logits([0, 1], k=4), [None, None])
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        joint_coherence(torch.zeros(3), [None] * 3)


# ---------------------------------------------------------------------------------------- real pairs (ceiling)
def test_joint_coherence_real_with_the_shipped_classifier(dm, classifier) -> None:
    """Every real caption is valid and allows the true digit, so the ceiling is at least the classifier's accuracy
    on the same 359 test images (0.847 in leaderboards/evaluators.md), and equals a count done here by hand."""
    spec = EvalSpec(n_fake=0, batch_size=128, classifier_backbone="classifier-indomain-digits")
    model = MODELS.get("mvae-late").from_data(dm.data_spec(), latent_dim=4, width=8, d_model=8, n_heads=2)
    evaluator = Evaluator(spec, ("joint-coherence-real", "coherence-real"), None, classifier_backbone=classifier)
    rows = {s.metric: s for s in evaluator.evaluate(model, dm, seed=0)}
    joint, accuracy = rows["joint-coherence-real"], rows["coherence-real"]
    test = dm.split_tensors("test")
    pred = classifier_logits(classifier, to_uint8(test["image"]), 64).argmax(1)
    by_hand = np.mean([int(p) in digit_group(int(y)) for p, y in zip(pred, test["label"])])
    assert joint.value == pytest.approx(by_hand, abs=1e-12)
    assert joint.value >= accuracy.value >= 0.8 and joint.value <= 1.0
    assert joint.n_real == len(test["label"]) == 359
    assert "valid-captions-real" not in rows and "pairs=359 real images of test" in joint.protocol
    assert "classifier=classifier-indomain-digits" in joint.protocol and joint.backbone == "classifier-indomain-digits"


# -------------------------------------------------------------------------------------- a model, end to end
@pytest.fixture(scope="module")
def trained_late(dm):
    """mvae-late (default sizes) after 300 Adam steps on captioned-digits: about a third of its prior samples then
    decode to valid captions (none do untrained)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the per-test one-thread fixture
    torch.manual_seed(0)
    model = MODELS.get("mvae-late").from_data(dm.data_spec())
    opt = model.configure_optimizers()
    train = dm.split_tensors("train")
    gen = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        for _ in range(300):
            idx = torch.randint(len(train["label"]), (64,), generator=gen)
            loss, _ = model.training_objective({k: v[idx] for k, v in train.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    return model.eval()


def test_provider_end_to_end_on_a_trained_mvae_late(dm, classifier, trained_late) -> None:
    spec = EvalSpec(n_fake=150, batch_size=64, classifier_backbone="classifier-indomain-digits")
    evaluator = Evaluator(spec, ("joint-coherence", "joint-coherence-real"), None, classifier_backbone=classifier)
    first = {s.metric: s for s in evaluator.evaluate(trained_late, dm, seed=0)}
    again = {s.metric: s for s in evaluator.evaluate(trained_late, dm, seed=0)}
    other = {s.metric: s for s in evaluator.evaluate(trained_late, dm, seed=1)}
    value = first["joint-coherence"].value
    assert 0.0 < value <= 1.0
    assert {k: (s.value, s.protocol) for k, s in first.items()} == {k: (s.value, s.protocol) for k, s in again.items()}
    assert first["joint-coherence-real"].value == other["joint-coherence-real"].value  # no model in it
    # by hand: the same seeded draws, in the same batches, classified and parsed here
    gen = torch.Generator().manual_seed(0)
    draws = [trained_late.sample_joint(b, generator=gen) for b in (64, 64, 22)]
    images = to_uint8(torch.cat([x for x, _ in draws]))
    text = torch.cat([w for _, w in draws])
    sets = dm.caption_label_sets(text)
    pred = classifier.classify(images).argmax(1)
    valid = sum(s is not None for s in sets)
    coherent = sum(s is not None and int(p) in s for p, s in zip(pred, sets))
    assert value == pytest.approx(coherent / 150, abs=1e-12)
    assert 0 < valid < 150 and first["valid-captions"].value == pytest.approx(valid / 150, abs=1e-12)
    assert value <= valid / 150
    assert "samples=150" in first["joint-coherence"].protocol
    # another seed draws other samples
    other_draws = sample_joint_pairs(trained_late, 150, 64, seed=1)
    assert not torch.equal(other_draws[0], images)


def test_joint_samples_are_drawn_once_per_unit(dm, classifier) -> None:
    model = MODELS.get("mvae-late").from_data(dm.data_spec(), latent_dim=4, width=8, d_model=8, n_heads=2).eval()
    calls: list[int] = []
    original = model.sample_joint

    def counting(n, generator=None):
        calls.append(n)
        return original(n, generator=generator)

    model.sample_joint = counting
    spec = EvalSpec(n_fake=40, batch_size=16)
    inputs = UnitInputs(ModelSubject(model, dm, spec, seed=0), spec, classifier_backbone=classifier)
    inputs.answer([(rq.ClassifierLogits("joint"), None), (rq.CaptionLabelSets("joint"), None)])
    assert calls == [16, 16, 8]
    assert inputs.get(rq.ClassifierLogits("joint"), None).shape == (40, 10)
    assert len(inputs.get(rq.CaptionLabelSets("joint"), None).label_sets) == 40


def test_applies_only_to_joint_samplers(dm) -> None:
    names = ["joint-coherence", "joint-coherence-real", "mse"]
    for name in ("mvae-early", "mvae-mid", "mvae-late", "mopoe", "mmvae"):
        model = MODELS.get(name).from_data(dm.data_spec(), latent_dim=4, width=8, d_model=8, n_heads=2)
        assert applicable_metrics(model, names) == names
    vae = MODELS.get("vae").from_data(dm.data_spec(), latent_dim=2)
    assert applicable_metrics(vae, names) == ["mse"]
    classifier = MODELS.get("early-concat").from_data(dm.data_spec())
    assert applicable_metrics(classifier, names) == []


def test_a_datamodule_without_a_caption_parser_is_refused_in_one_line(tmp_path, classifier) -> None:
    from datamodules.captioned_fashion import CaptionedFashionMNISTDataModule
    from tests.datamodules.test_fashion_mnist import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    fashion = CaptionedFashionMNISTDataModule(data_dir=str(tmp_path), val_size=2)
    model = MODELS.get("mvae-late").from_data(fashion.data_spec(), latent_dim=4, width=8, d_model=8, n_heads=2)
    spec = EvalSpec(n_fake=4, batch_size=4, classifier_backbone="classifier-indomain-digits")
    evaluator = Evaluator(spec, ("joint-coherence",), None, classifier_backbone=classifier)
    with pytest.raises(InputError) as info:
        evaluator.evaluate(model, fashion, seed=0)
    message = str(info.value)
    assert "\n" not in message and "joint-coherence" in message and "captioned-fashion-mnist" in message
    assert "caption_label_sets" in message
