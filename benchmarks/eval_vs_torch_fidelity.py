"""``bench eval``'s scoring against ``torch_fidelity.calculate_metrics``: wall time and values, same run.

Both score the same two uint8 image sets (``--n`` each, 3×32×32 noise, the fake set dimmed so the distances are not
zero) for FID, KID and IS on torch-fidelity's Inception (``inception-v3-compat``) loaded from the same weights file,
on the CPU, with the same protocol (seed 2020, 10 IS splits, 100 KID subsets of ``--n // 2``):

* **ours**: :func:`bench.eval_images.evaluate_image_sets` (the evaluator ``bench eval`` runs; backbone built once
  outside the timing, as the CLI builds it once per call), no real-feature cache;
* **torch-fidelity**: ``calculate_metrics(input1=fake, input2=real, fid=True, kid=True, isc=True, cache=False,
  save_cpu_ram=True)`` (it builds its network inside each call; that load is timed separately and subtracted).

Without ``--weights`` (the real file cannot be downloaded here) a random-init state dict of the same network is
saved to a temporary file: the cost is the network's, not the weights'. Interleaved, best of ``--reps``; prints
both times, the ratio ours / torch-fidelity (goal ≤ 1.0) and the values' relative differences.

Usage: python benchmarks/eval_vs_torch_fidelity.py [--n 500] [--reps 2] [--weights FILE] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def random_weights(path: Path) -> Path:
    """A He-initialized torch-fidelity Inception state dict (as tests/conftest.py makes it)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    torch.manual_seed(0)
    with (mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}),
          mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


class Images(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:  # (3, H, W) uint8
        return self.x[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torch_fidelity

    from bench.backbones.build import build_backbone
    from bench.eval_images import evaluate_image_sets
    from bench.image_inputs import ImageSet

    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (args.n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    fake = (torch.randint(0, 256, (args.n, 3, 32, 32), generator=gen, dtype=torch.uint8).float() * 0.7).to(torch.uint8)
    subset = args.n // 2
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_weights(Path(tmp) / "inception.pth")
        backbone = build_backbone("inception-v3-compat", weights_path=str(weights))

        def ours() -> dict:
            out = evaluate_image_sets(ImageSet(real, "real"), ImageSet(fake, "fake"), ["fid", "kid", "is"], backbone,
                                      kid_subset_size=subset)
            return {"fid": out["fid"], "kid": out["kid"], "is": out["is"]}

        def theirs() -> dict:
            out = torch_fidelity.calculate_metrics(
                input1=Images(fake), input2=Images(real), fid=True, kid=True, isc=True, kid_subset_size=subset,
                feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(weights), cuda=False,
                cache=False, verbose=False, save_cpu_ram=True)
            return {"fid": out["frechet_inception_distance"], "kid": out["kernel_inception_distance_mean"],
                    "is": out["inception_score_mean"]}

        def their_load() -> None:  # what calculate_metrics spends building its network, not scoring
            import torch_fidelity.feature_extractor_inceptionv3 as tfi

            tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(weights))

        times: dict[str, list[float]] = {"ours": [], "torch-fidelity": [], "its network load": []}
        values = {}
        for _ in range(args.reps):
            for name, fn in (("ours", ours), ("torch-fidelity", theirs), ("its network load", their_load)):
                start = time.perf_counter()
                values[name] = fn()
                times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    scoring = best["torch-fidelity"] - best["its network load"]
    print(f"{args.n} vs {args.n} images 3x32x32 → Inception 299 px, FID+KID+IS, torch threads {torch.get_num_threads()}, "
          f"{'given' if args.weights else 'random-init'} weights")
    print(f"ours {best['ours']:.1f} s; torch-fidelity {best['torch-fidelity']:.1f} s "
          f"(of which {best['its network load']:.1f} s building its network)")
    print(f"ratio ours / torch-fidelity: {best['ours'] / best['torch-fidelity']:.2f} "
          f"(vs its scoring alone: {best['ours'] / scoring:.2f})")
    for key in ("fid", "kid", "is"):
        a, b = values["ours"][key], values["torch-fidelity"][key]
        print(f"  {key}: ours {a:.6g}, torch-fidelity {b:.6g}, rel. diff {(a - b) / abs(b):.1e}")


if __name__ == "__main__":
    main()
