"""Full feature pipeline throughput as a fraction of the bare backbone forward, measured in the same run.

* **bare**: the backbone network alone on tensors that are already resized, normalized and in its memory format
  (``net.extract_features`` + global average pool, in the same micro-batches the backbone uses);
* **pipeline**: what ``bench run`` / ``bench eval`` do per batch: float [0, 1] generated images → uint8
  (:func:`bench.features.to_uint8`) → the backbone's resize and normalization → network → features, all through
  the evaluator's provider (:class:`bench.providers.UnitInputs`, as a model's samples stream through it), then
  ``FID.update`` (float64 running sums) on the features.

Both see the same N images at the dataset's own size (Fashion-MNIST-like 1×28×28), batches of ``--batch``; the
reported figure is pipeline images/s ÷ bare images/s (goal ≥ 0.9). Each measurement is the best of ``--reps``
after one warm-up pass of each, the two interleaved. Single process, torch threads as configured (``--threads``, default: torch's).

Usage: python benchmarks/pipeline_throughput.py [--size 128] [--n 512] [--batch 128] [--resize bilinear clean]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.backbones.build import build_backbone
from bench.features import iter_batches, to_uint8
from bench.metrics import requests as rq
from bench.metrics.fid import FID
from bench.providers import Subject, UnitInputs
from bench.spec import EvalSpec


class Samples(Subject):
    """Generated float [0, 1] images streamed as a model's samples are (quantized per batch)."""

    def __init__(self, images: torch.Tensor, batch: int) -> None:
        self.images_, self.batch = images, batch

    def sources(self) -> frozenset[str]:
        return frozenset({"fake"})

    def images(self, source: str) -> None:
        return None  # streamed

    def stream(self, source: str, batch_size: int):
        return (to_uint8(b) for b in iter_batches(self.images_, batch_size)), len(self.images_)


def best_rates(fns: list, n: int, reps: int) -> list[float]:
    """Images per second of each ``fn()`` (each processes ``n`` images), best of ``reps``; the functions are
    interleaved within every repetition so that drifts of the machine's speed hit them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [n / min(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="backbone input side")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--resize", nargs="+", default=["bilinear", "clean"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.n, 1, 28, 28, generator=gen)  # (N, 1, 28, 28) float [0, 1], like a generator's output
    print(f"efficientnet-lite0 at {args.size} px, N={args.n}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    for mode in args.resize:
        backbone = build_backbone("efficientnet-lite0", size=args.size, resize=mode)
        # Bare forward inputs prepared outside the timing: resized, normalized, channels_last.
        prepared = [backbone.preprocess((b * 255).round().to(torch.uint8)) for b in iter_batches(images, args.batch)]

        @torch.inference_mode()
        def bare() -> None:
            for x in prepared:
                for part in x.split(8):  # the backbone's own CPU micro-batch
                    backbone.net.extract_features(part).mean(dim=(2, 3))

        def pipeline() -> None:
            inputs = UnitInputs(Samples(images, args.batch), EvalSpec(n_fake=args.n, batch_size=args.batch))
            fid = FID(num_features=backbone.num_features)
            fid.update(inputs.get(rq.Features("fake"), backbone), real=False)

        bare()  # warm-up (allocator, kernels)
        pipeline()
        rate_bare, rate_pipe = best_rates([bare, pipeline], args.n, args.reps)
        print(f"resize={mode:<12} bare {rate_bare:7.1f} img/s   pipeline {rate_pipe:7.1f} img/s   "
              f"ratio {rate_pipe / rate_bare:.3f}")


if __name__ == "__main__":
    main()
