"""bench.metrics.likelihood: nll-bpd's bits/dim conversion, batch independence, float64 states and protocol."""

from __future__ import annotations

import math

import pytest
import torch

from bench.metrics.base import MetricContext
from bench.metrics.likelihood import NLLBitsPerDim, nats_to_bits_per_dim
from bench.metrics.registry import METRICS


def test_registered_lower_is_better_with_likelihood_input() -> None:
    assert METRICS.get("nll-bpd") is NLLBitsPerDim
    assert NLLBitsPerDim.input_kind == "likelihood"
    assert NLLBitsPerDim.higher_is_better is False


def test_bits_per_dim_by_hand() -> None:
    metric = NLLBitsPerDim()
    metric.update(torch.tensor([100.0, 200.0]), num_dims=256)
    expected = 150.0 / (256 * math.log(2))  # mean nats per image / (dims · ln 2)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-12)
    assert nats_to_bits_per_dim(150.0, 256) == pytest.approx(expected, rel=1e-12)
    # 784 dims at exactly 1 bit each: 784 · ln 2 nats per image
    metric = NLLBitsPerDim(num_dims=784)
    metric.update(torch.full((3,), 784 * math.log(2), dtype=torch.float64))  # float64 in, float64 kept
    assert metric.compute().item() == pytest.approx(1.0, rel=1e-12)


def test_independent_of_batch_size_and_float64() -> None:
    nats = torch.rand(101, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 500 + 100
    whole = NLLBitsPerDim(num_dims=3 * 32 * 32)
    whole.update(nats)
    batched = NLLBitsPerDim(num_dims=3 * 32 * 32)
    for part in nats.split(7):
        batched.update(part)
    a, b = whole.compute(), batched.compute()
    assert a.dtype == torch.float64 and b.dtype == torch.float64
    assert a.item() == pytest.approx(b.item(), rel=1e-13)
    assert a.item() == pytest.approx(nats.double().mean().item() / (3 * 32 * 32 * math.log(2)), rel=1e-13)
    assert all(getattr(whole, s).dtype == torch.float64 for s in ("sum_nats", "sum_dims", "num_images"))


def test_states_sum_across_processes() -> None:
    """Each state's dist_reduce_fx is a sum: merging two ranks' states equals one metric over all images."""
    nats = torch.linspace(50, 400, 20)
    rank0, rank1, both = (NLLBitsPerDim(num_dims=64) for _ in range(3))
    rank0.update(nats[:13])
    rank1.update(nats[13:])
    both.update(nats)
    assert all(fx is torch.sum or getattr(fx, "__name__", "") == "dim_zero_sum" for fx in rank0._reductions.values())
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(both.compute().item(), rel=1e-13)


def test_build_takes_dims_from_context_and_protocol_states_choices() -> None:
    metric = NLLBitsPerDim.build(MetricContext(image_shape=(1, 28, 28)))
    assert metric.num_dims == 784 and metric.importance_samples == NLLBitsPerDim.default_importance_samples == 64
    protocol = metric.protocol()
    for fact in ("importance_samples=64", "likelihood=bernoulli", "upper", "bits/dim", "dims=784 per image"):
        assert fact in protocol


def test_protocol_of_an_exact_nll_states_the_scored_dims_and_no_importance_samples() -> None:
    """What the evaluator records for an autoregressive model scoring a 14×14 token grid of a 28×28 image."""
    metric = NLLBitsPerDim.build(MetricContext(image_shape=(1, 28, 28)))
    metric.likelihood, metric.bound = "categorical-16levels-14x14(quantized intensities)", "exact"
    metric.update(torch.full((4,), 196 * math.log(2)), num_dims=196)
    assert metric.compute().item() == pytest.approx(1.0)
    assert metric.protocol() == ("likelihood=categorical-16levels-14x14(quantized intensities),bound=exact,"
                                 "units=bits/dim,dims=196 per image")


def test_rejects_bad_input_and_is_nan_when_empty() -> None:
    metric = NLLBitsPerDim()
    with pytest.raises(ValueError, match="num_dims"):
        metric.update(torch.ones(3))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        metric.update(torch.ones(3, 2), num_dims=4)
    assert math.isnan(NLLBitsPerDim(num_dims=4).compute().item())


def test_end_to_end_with_a_vae_nll() -> None:
    """What the evaluator does: model.nll(x, K, generator) per batch → update(nll, C·H·W) → bits/dim."""
    from models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("vae")(image_shape=(1, 16, 16), latent_dim=4, width=8).eval()
    x = torch.rand(10, 1, 16, 16)
    metric = NLLBitsPerDim.build(MetricContext(image_shape=(1, 16, 16)))
    gen = torch.Generator().manual_seed(0)
    values = []
    for batch in x.split(4):
        nll = model.nll(batch, num_samples=metric.importance_samples, generator=gen)
        values.append(nll)
        metric.update(nll.cpu(), num_dims=batch[0].numel())
    expected = model.bits_per_dim(torch.cat(values).double(), model.image_shape).mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < metric.compute().item() < 2  # an untrained decoder is close to 1 bit per pixel
