"""VQ-VAE codebook statistics under DDP (two gloo processes on CPU): every rank updates its EMA codebook from the
global batch's counts and sums, so the ranks keep one codebook — equal to a single process fed the whole batch —
and dead codes are re-initialized identically on every rank."""

from __future__ import annotations

import torch
import torch.distributed as dist

from models.vae.vq_vae import VectorQuantizer
from tests.distributed import run_on_gloo_ranks

STEPS = 4


def _batches(world: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(2 * world, 4, 3, 3, generator=gen) for _ in range(STEPS)]  # (B, D, h, w)


def _quantizer(dead_code_steps: int) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(16, 4, 0.9, dead_code_steps)


def _train(vq: VectorQuantizer, batches: list[torch.Tensor]) -> VectorQuantizer:
    for z in batches:
        vq.update(z, vq.indices(z))
    return vq


def _ranked(dead_code_steps: int, rank: int, world: int) -> list[torch.Tensor]:
    vq = _train(_quantizer(dead_code_steps), [z[2 * rank : 2 * rank + 2] for z in _batches(world)])
    gathered = [torch.empty_like(vq.codebook) for _ in range(world)]
    dist.all_gather(gathered, vq.codebook)
    return gathered


def _ranked_ema(rank: int, world: int) -> list[torch.Tensor]:
    return _ranked(0, rank, world)


def _ranked_dead_codes(rank: int, world: int) -> list[torch.Tensor]:
    return _ranked(1, rank, world)


def test_ema_codebook_is_the_global_batch_codebook_on_every_rank():
    codebooks = run_on_gloo_ranks(_ranked_ema)
    single = _train(_quantizer(0), _batches(2)).codebook
    torch.testing.assert_close(codebooks[0], codebooks[1], rtol=0, atol=0)
    torch.testing.assert_close(codebooks[0], single, rtol=1e-6, atol=1e-6)  # same sums, another summation order


def test_dead_code_reinitialization_agrees_across_ranks():
    codebooks = run_on_gloo_ranks(_ranked_dead_codes)
    torch.testing.assert_close(codebooks[0], codebooks[1], rtol=0, atol=0)
