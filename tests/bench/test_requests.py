"""The request/provider contract of the evaluator (bench/evaluate.py, bench/providers.py): every feature set is
computed once per unit and shared, several backbones in one track, metrics built (and refused) before training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from bench.backbones import BACKBONES, FeatureBackbone
from bench.cli import main
from bench.evaluate import Evaluator, applicable_metrics
from bench.metrics import METRICS
from bench.metrics import requests as rq
from bench.metrics.fid import FID
from bench.spec import EvalSpec
from datamodules import DATAMODULES
from models.base import ImageGenerator

#: Forward calls per backbone instance, by image count (reset per test).
CALLS: Counter = Counter()


class CountingBackbone(FeatureBackbone):
    """(B, 1, 8, 8) uint8 → (B, 4) row-block means, with 3 class logits; counts the images it sees."""

    registry_name, forward_version, num_features = "counting-test", "1", 4
    resize, weights_sha256 = "none-8", "e" * 64

    def __init__(self, tag: str = "a") -> None:
        super().__init__()
        self.tag, self.registry_name = tag, f"counting-{tag}"  # distinct names: distinct real-feature cache keys
        self.register_buffer("scale", torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        CALLS[self.tag] += len(images)
        x = images.float().div(255).view(len(images), 4, 16)  # (B, 4, 16)
        return x.mean(-1) * self.scale + (0.0 if self.tag == "a" else x.std(-1))  # (B, 4)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self(images)
        return feats, feats[:, :3] * 4  # (B, 4), (B, 3)


class NoiseGenerator(ImageGenerator):
    """Draws uniform images; counts draws."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # -> (n, 1, 8, 8)
        self.drawn += n
        return torch.rand(n, 1, 8, 8, generator=generator)


@pytest.fixture
def digits(tmp_cache):
    dm = DATAMODULES.get("digits")()
    dm.setup()
    return dm


def test_three_metrics_and_is_share_one_forward_per_image(digits) -> None:
    """fid, kid, prc (features) and is (logits) on one backbone, fd on a second: every generated image is drawn
    once and seen once by each backbone; the real split once per backbone (then from the cache)."""
    CALLS.clear()
    main_bb, other = CountingBackbone("a"), CountingBackbone("b")
    spec = EvalSpec(n_fake=60, batch_size=16, kid_subsets=3, kid_subset_size=20, is_splits=2)
    evaluator = Evaluator(spec, ("fid", "kid", "prc", "is", "fd@counting-b"), main_bb, backbones={"counting-b": other})
    model = NoiseGenerator()
    scores = evaluator.evaluate(model, digits, seed=0)
    n_real = len(digits.split_tensors("test")["label"])
    assert model.drawn == 60
    assert CALLS == {"a": 60 + n_real, "b": 60 + n_real}
    names = [s.metric for s in scores]
    assert names == ["fid", "kid", "precision", "recall", "density", "coverage", "is", "fd@counting-b"]
    by = {s.metric: s for s in scores}
    assert by["fd@counting-b"].value != by["fid"].value and by["fd@counting-b"].n_fake == 60
    assert by["kid"].value_std is not None and by["is"].value_std is not None and by["fid"].value_std is None
    CALLS.clear()
    evaluator.evaluate(NoiseGenerator(), digits, seed=1)  # the next unit: real features from the cache
    assert CALLS == {"a": 60, "b": 60}


def test_fd_on_a_backbone_equals_fid_on_its_features(digits) -> None:
    """``fd@b`` is FID's math on backbone b's features: equal to FID fed those features by hand."""
    main_bb, other = CountingBackbone("a"), CountingBackbone("b")
    spec = EvalSpec(n_fake=40, batch_size=16)
    scores = Evaluator(spec, ("fd@b",), main_bb, backbones={"b": other}).evaluate(NoiseGenerator(), digits, seed=3)
    gen = torch.Generator().manual_seed(3)
    fake = torch.cat([NoiseGenerator().sample(16, gen), NoiseGenerator().sample(16, gen), NoiseGenerator().sample(8, gen)])
    real = (digits.split_tensors("test")["image"] * 255).round().to(torch.uint8)
    fid = FID(num_features=4)
    fid.update(other(real), real=True)
    fid.update(other((fake * 255).round().to(torch.uint8)), real=False)
    assert scores[0].value == pytest.approx(fid.compute().item(), rel=1e-9)
    assert scores[0].backbone == "counting-b" and scores[0].metric == "fd@b"


def test_a_metric_applies_when_its_requests_can_be_answered() -> None:
    from datamodules.base import DataSpec
    from models import MODELS

    data = DataSpec(image_shape=(1, 8, 8), num_classes=10)
    vae = MODELS.get("vae").from_data(data)
    gan = MODELS.get("dcgan").from_data(data)
    asked = ["fid", "fd@x", "mse", "nll-bpd", "authpct", "cross-fid", "accuracy"]
    assert applicable_metrics(vae, asked) == ["fid", "fd@x", "mse", "nll-bpd", "authpct"]
    assert applicable_metrics(gan, asked) == ["fid", "fd@x", "authpct"]


class NeedsWeights(FID):
    """A metric whose build loads a weights file that is not there (like a learned-feature metric)."""

    @classmethod
    def build(cls, ctx):
        raise FileNotFoundError("weights file /nowhere/needs-weights.pt does not exist; set $NEEDS_WEIGHTS")

    def requests(self) -> tuple[rq.Request, ...]:
        return rq.Features("real"), rq.Features("fake")


def test_metric_that_cannot_be_built_fails_before_training(tmp_path: Path, capsys, monkeypatch) -> None:
    """Preflight builds every metric: missing metric weights are exit 2 in one line naming the file and key, and
    nothing trains (no unit record, no log)."""
    monkeypatch.setitem(METRICS._items, "needs-weights-test", NeedsWeights)
    monkeypatch.setattr(NeedsWeights, "registry_name", "needs-weights-test", raising=False)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nseeds: [0]\ntracks:\n- name: t\n  primary_metric: fid\n  metrics: [fid, needs-weights-test]\n"
        "  datamodules: {digits: {}}\n  models: {dcgan: {}}\n  trainer: {max_epochs: 1, limit_train_batches: 1}\n"
        "  eval: {n_fake: 20, backbone_size: 32}\n")
    out = tmp_path / "out"
    code = main(["run", "--suite", str(suite), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(suite) in err[0] and "tracks[0].metrics" in err[0] and "/nowhere/needs-weights.pt" in err[0]
    assert not (out / "units").exists() and not (out / "logs").exists()


def test_is_on_a_backbone_without_logits_is_refused_in_preflight(tmp_path: Path, capsys, monkeypatch) -> None:
    class Headless(CountingBackbone):
        features_and_logits = FeatureBackbone.features_and_logits

    monkeypatch.setitem(BACKBONES._items, "headless-test", Headless)
    monkeypatch.setattr(Headless, "registry_name", "headless-test", raising=False)
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nseeds: [0]\ntracks:\n- name: t\n  primary_metric: fid\n  metrics: [fid, is@headless-test]\n"
        "  datamodules: {digits: {}}\n  models: {dcgan: {}}\n  eval: {n_fake: 20, backbone_size: 32}\n")
    code = main(["run", "--suite", str(suite), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is@headless-test needs class logits" in err[0]
