"""bench.metrics.clip_score: 100·max(cos, 0) by hand, the clamp, batch independence, truncation, DDP.

The backbone side (cosines from an open_clip model) is tested in tests/backbones/test_open_clip_backbone.py.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bench.metrics import METRICS, BenchMetric
from bench.metrics.base import MetricContext
from bench.metrics.clip_score import CLIPScore, clip_score, clip_score_per_sample
from tests.distributed import run_on_gloo_ranks


def _embeddings(seed: int, n: int = 40, e: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, e, generator=g) * 3
    text = 0.5 * image + torch.randn(n, e, generator=g) * 3  # correlated: a mix of positive and negative cosines
    return image, text


def _by_hand(image: torch.Tensor, text: torch.Tensor) -> tuple[float, float]:
    scores = []
    for a, b in zip(image.tolist(), text.tolist(), strict=True):
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        cos = dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
        scores.append(100 * max(cos, 0.0))
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def _cosine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(image, text, dim=-1)


def test_registered() -> None:
    """Registered as `clip-score`, higher is better, fed image-text cosines; built from any context."""
    assert METRICS.get("clip-score") is CLIPScore and issubclass(CLIPScore, BenchMetric)
    assert CLIPScore.higher_is_better is True and CLIPScore.input_kind == "image_text"
    assert isinstance(CLIPScore.build(MetricContext()), CLIPScore)


def test_matches_formula_by_hand() -> None:
    """Metric and functional twin equal the mean / population std of 100·max(cos, 0) written out in Python."""
    image, text = _embeddings(0)
    mean, std = _by_hand(image, text)
    cos = _cosine(image, text)
    assert (cos < 0).any() and (cos > 0).any()
    f_mean, f_std = clip_score(image, text)
    assert f_mean.dtype == torch.float64
    assert f_mean.item() == pytest.approx(mean, rel=1e-6) and f_std.item() == pytest.approx(std, rel=1e-6)
    metric = CLIPScore()
    metric.update(cos)
    assert metric.compute().item() == pytest.approx(mean, rel=1e-6)
    assert metric.last_std.item() == pytest.approx(std, rel=1e-6)
    # Scale of the embeddings does not matter (cosine).
    assert clip_score(image * 7, text / 3)[0].item() == pytest.approx(mean, rel=1e-6)


def test_negative_cosine_clamped_to_zero() -> None:
    """cos -0.5 scores 0, not -50; cos 0.2 scores 20: mean 10, std 10."""
    metric = CLIPScore()
    metric.update(torch.tensor([-0.5, 0.2]))
    assert metric.compute().item() == pytest.approx(10.0, rel=1e-6)  # 0.2 as float32
    assert metric.last_std.item() == pytest.approx(10.0, rel=1e-6)
    assert clip_score_per_sample(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.0, 100.0]
    anti = torch.tensor([[1.0, 0.0]])
    assert clip_score(anti, -anti)[0].item() == 0.0


@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_batch_size_independent(chunk: int) -> None:
    """Feeding the pairs in batches of any size gives the same mean and std as one batch (float64 sums)."""
    cos = _cosine(*_embeddings(1))
    whole = CLIPScore()
    whole.update(cos)
    expected = whole.compute().item(), whole.last_std.item()
    metric = CLIPScore()
    for part in cos.split(chunk):
        metric.update(part)
    assert metric.compute().item() == pytest.approx(expected[0], rel=1e-12)
    assert metric.last_std.item() == pytest.approx(expected[1], rel=1e-9)


def test_forward_returns_batch_value_and_accumulates() -> None:
    """torchmetrics' forward: the batch's own score, while the running state keeps every batch."""
    metric = CLIPScore()
    assert metric(torch.tensor([0.1, 0.3])).item() == pytest.approx(20.0)
    assert metric(torch.tensor([0.5])).item() == pytest.approx(50.0)
    assert metric.compute().item() == pytest.approx(30.0)


def test_truncated_captions_counted_warned_and_in_protocol() -> None:
    metric = CLIPScore()
    metric.update(torch.tensor([0.1, 0.2, 0.3]), num_truncated=2)
    metric.update(torch.tensor([0.4]), num_truncated=1)
    with pytest.warns(UserWarning, match="3 of 4 captions"):
        metric.compute()
    assert metric.last_num_truncated == 3
    assert "truncated_captions=3" in metric.protocol() and "100*max(cos,0)" in metric.protocol()

    clean = CLIPScore()
    clean.update(torch.tensor([0.1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean.compute()
    assert "truncated_captions=0" in clean.protocol()


def test_reset() -> None:
    metric = CLIPScore()
    metric.update(torch.tensor([0.9]), num_truncated=1)
    metric.reset()
    metric.update(torch.tensor([0.1]))
    assert metric.compute().item() == pytest.approx(10.0) and metric.last_num_truncated == 0


@pytest.mark.parametrize(
    ("cosine", "num_truncated", "match"),
    [
        (torch.zeros(2, 3), 0, r"\(N,\)"),
        (torch.tensor([25.0, 30.0]), 0, "scaled by 100"),
        (torch.tensor([float("nan")]), 0, r"\[-1, 1\]"),
        (torch.tensor([0.1]), 2, "num_truncated"),
    ],
)
def test_bad_input_rejected(cosine: torch.Tensor, num_truncated: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CLIPScore().update(cosine, num_truncated=num_truncated)


def test_empty_compute_and_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="no image-caption pairs"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute before update
        CLIPScore().compute()
    with pytest.raises(ValueError, match="same shape"):
        clip_score(torch.zeros(3, 4), torch.zeros(2, 4))


# ---- DDP: two gloo ranks equal one process ----

def _ranked_clip_score(rank: int, world: int) -> tuple[float, float, int, str]:
    cos = _cosine(*_embeddings(2, n=30))
    part = slice(rank * 30 // world, (rank + 1) * 30 // world)
    metric = CLIPScore()
    metric.update(cos[part], num_truncated=rank + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean = metric.compute().item()
    return mean, metric.last_std.item(), metric.last_num_truncated, metric.protocol()


@pytest.mark.slow
def test_two_ranks_equal_one_process() -> None:
    """Sum states sync across ranks: rank 0 reports the score of all 30 pairs and 1 + 2 truncated captions."""
    metric = CLIPScore()
    metric.update(_cosine(*_embeddings(2, n=30)))
    expected = metric.compute().item(), metric.last_std.item()
    mean, std, truncated, protocol = run_on_gloo_ranks(_ranked_clip_score)
    assert mean == pytest.approx(expected[0], rel=1e-12) and std == pytest.approx(expected[1], rel=1e-9)
    assert truncated == 3 and "truncated_captions=3" in protocol
