"""Shared-feature scoring against scoring each metric on its own, measured in the same run.

The unit is one generative model on Fashion-MNIST-shaped data (an untrained DCGAN: what is timed is the scoring,
not the model) scored by the ``generative`` track's sample metrics — ``fid``, ``kid``, ``is``, ``prc`` on the
track's EfficientNet-Lite0 at 128 px — plus ``fd`` and ``kd`` on a second backbone
(``fd@classifier-indomain-fashion``, ``kd@classifier-indomain-fashion``), the case the request/provider evaluator
was built for (a track with several feature backbones):

* **shared**: one :class:`bench.evaluate.Evaluator` for all six metrics (the evaluator of ``bench run``): the
  samples are drawn once and every backbone sees each sample once;
* **separate**: one evaluator per metric, as when every metric extracts its own features (torchmetrics' FID, KID
  and IS each hold their own extractor): the samples are drawn and forwarded once per metric.

Real features come from the verified cache in both (computed once before the timing). Prints the forwards per
generated image of each backbone (counted, goal: 1) and the wall-time ratio separate / shared, best of ``--reps``.

Usage: python benchmarks/shared_features.py [--n 1000] [--reps 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from bench.backbones.build import build_backbone
from bench.evaluate import Evaluator
from bench.features import to_uint8
from bench.providers import ImageSetSubject
from bench.spec import EvalSpec
from datamodules.base import DataSpec
from models import MODELS

METRICS = ("fid", "kid", "is", "prc", "fd@classifier-indomain-fashion", "kd@classifier-indomain-fashion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="generated (and real) images")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DataSpec(image_shape=(1, 28, 28), num_classes=10)
    model = MODELS.get("dcgan").from_data(data).eval()
    real = to_uint8(torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    spec = EvalSpec(n_fake=args.n, batch_size=100, kid_subsets=20, kid_subset_size=500, backbone_size=128)
    main_bb = build_backbone("efficientnet-lite0", size=128)
    named = {"classifier-indomain-fashion": build_backbone("classifier-indomain-fashion")}
    counts: Counter = Counter()

    def fake_images() -> torch.Tensor:  # the model's samples, drawn as the evaluator draws them
        gen = torch.Generator().manual_seed(0)
        return torch.cat([to_uint8(model.sample(100, generator=gen)) for _ in range(args.n // 100)])

    def score(metrics: tuple[str, ...], cache: Path) -> None:
        evaluator = Evaluator(spec, metrics, main_bb, cache, backbones=named)
        evaluator.counter = lambda bb, k: counts.update({(bb.registry_name, "all"): k})
        subject = ImageSetSubject({"real": real, "fake": fake_images()}, {"real": ("bench-random", "test")})
        evaluator.score(subject, data, seed=0)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        score(("fid", "fd@classifier-indomain-fashion"), cache)  # fills the real-feature cache
        times = {"shared": [], "separate": []}
        forwards = {}
        for _ in range(args.reps):
            for mode in ("shared", "separate"):
                counts.clear()
                start = time.perf_counter()
                if mode == "shared":
                    score(METRICS, cache)
                else:
                    for metric in METRICS:
                        score((metric,), cache)
                times[mode].append(time.perf_counter() - start)
                forwards[mode] = {name: k / args.n for (name, _), k in counts.items()}
    print(f"{len(METRICS)} metrics ({', '.join(METRICS)}), n={args.n} generated vs {args.n} real, "
          f"torch threads {torch.get_num_threads()}")
    for mode in ("shared", "separate"):
        per = ", ".join(f"{name} {f:g}" for name, f in sorted(forwards[mode].items()))
        print(f"{mode:>9}: best {min(times[mode]):.2f} s; backbone forwards per generated image: {per}")
    print(f"ratio separate / shared: {min(times['separate']) / min(times['shared']):.2f}x")


if __name__ == "__main__":
    main()
