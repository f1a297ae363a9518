"""MaskGIT's decoding steps against sample quality and sampling time, on one trained model.

MaskGIT decodes N tokens in T parallel steps (the suite's default T = 8 for the 196 tokens of a 14×14 grid: about
25 tokens fixed per step, each drawn independently given the tokens fixed before). This script takes the weights of
a ``maskgit`` run of the ``generative`` suite (``bench run`` saves them under ``<out>/weights/<track>/``), and for
each T in ``--steps`` draws the suite's ``n_fake`` images with the run's seed and scores them with the suite's own
evaluation of the ``transformers`` track (same backbone, resize, reference split, KID subsets), printing FID, KID,
precision/recall and the sampling time relative to T = the first value. ``--choice-temperature`` sets the scale of
the annealed Gumbel noise on the confidences (the paper's 4.5 is the model default). Nothing is asserted.

Usage: python benchmarks/maskgit_decoding_steps.py --weights runs/generative/weights/transformers/maskgit-fashion-mnist-seed0.pt
       [--steps 8 16 32 64] [--seed 0] [--n 2000] [--choice-temperature 4.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evaluate import Evaluator  # noqa: E402
from bench.runner import backbone_key, prepare  # noqa: E402
from bench.suites import load_suite  # noqa: E402
from models.transformer.maskgit import MaskGIT  # noqa: E402

METRICS = ("fid", "kid", "prc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="a maskgit weights file saved by bench run")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64], help="decoding steps T to compare")
    parser.add_argument("--seed", type=int, default=0, help="sampling and metric seed (use the run's seed)")
    parser.add_argument("--n", type=int, help="generated images (default: the suite's n_fake)")
    parser.add_argument("--choice-temperature", type=float, help="Gumbel scale on confidences (default: the model's)")
    parser.add_argument("--suite", default="generative", help="suite whose `transformers` track sets the evaluation")
    args = parser.parse_args()

    model = MaskGIT.load_weights(args.weights)
    if args.choice_temperature is not None:
        model.hparams.choice_temperature = args.choice_temperature
    spec = load_suite(args.suite).with_overrides(models=["maskgit"])
    track = next(t for t in spec.tracks if t.name == "transformers")
    if args.n:
        track = dataclasses.replace(track, eval=dataclasses.replace(track.eval, n_fake=args.n))
    dms, backbones = prepare(dataclasses.replace(spec, tracks=(track,)))
    dm = next(iter(dms.values()))
    evaluator = Evaluator(track.eval, METRICS, backbones[backbone_key(track.eval)])
    evaluator.real_features(dm)  # cache the reference features before timing anything

    print(f"{args.weights} ({model.num_parameters():,} parameters), {track.eval.n_fake} images, seed {args.seed}, "
          f"choice temperature {model.hparams.choice_temperature}, {model.seq_len} tokens")
    print(f"{'steps':>5} {'fid':>9} {'kid':>8} {'precision':>9} {'recall':>7} {'seconds':>8} {'time ratio':>10}")
    first: float | None = None
    for steps in args.steps:
        model.hparams.num_steps = steps
        start = time.perf_counter()
        scores = {s.metric: s.value for s in evaluator.evaluate(model, dm, args.seed)}
        seconds = time.perf_counter() - start
        first = first or seconds
        print(f"{steps:>5} {scores['fid']:>9.1f} {scores['kid']:>8.3f} {scores['precision']:>9.3f} "
              f"{scores['recall']:>7.3f} {seconds:>8.1f} {seconds / first:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
