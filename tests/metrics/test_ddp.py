"""FID, KID, IS and PRC over two processes (gloo, CPU) equal the single-process values on the same data.

torchmetrics syncs metric states across ranks in ``compute()`` with each state's ``dist_reduce_fx``: FID's
float64 sums are summed, KID/IS/PRC's feature lists are concatenated (rank 0's part first).
"""

from __future__ import annotations

import pytest
import torch

from bench.metrics.fid import FID
from bench.metrics.inception_score import InceptionScore
from bench.metrics.kid import KID
from bench.metrics.prc import PRC
from tests.distributed import run_on_gloo_ranks

N, D, K = 64, 16, 10


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(N, D, generator=gen)
    fake = torch.randn(N, D, generator=gen) * 1.3 + 0.2
    logits = torch.randn(N, K, generator=gen) * 2
    return real, fake, logits


def _metrics() -> dict[str, object]:
    return {
        "fid": FID(num_features=D),
        "kid": KID(subsets=5, subset_size=20, seed=1),
        "is": InceptionScore(splits=4, seed=1),
        "prc": PRC(),
    }


def _scores(metrics: dict[str, object], real: torch.Tensor, fake: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    for name, metric in metrics.items():
        if name == "is":
            metric.update(logits)
        else:
            metric.update(real, real=True)
            metric.update(fake, real=False)
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):
            out.update({k: float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out


def _ranked_scores(rank: int, world: int) -> dict[str, float]:
    real, fake, logits = _data()
    part = slice(rank * N // world, (rank + 1) * N // world)  # contiguous halves: rank order = data order
    return _scores(_metrics(), real[part], fake[part], logits[part])


@pytest.mark.slow
def test_two_ranks_equal_one_process() -> None:
    expected = _scores(_metrics(), *_data())
    got = run_on_gloo_ranks(_ranked_scores)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
