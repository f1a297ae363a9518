"""GPT vs Transformer-XL at equal parameters: sampling with and without their caches, and a training step on the
784 pixels of a 28×28 image.

Sampling: for each token grid (14×14 = 196 tokens, and 28×28 = 784: one token per pixel), ``gpt`` (KV cache) and
``transformer-xl`` at the width that matches GPT's parameter count (``gpt_matched_hparams``; memory + the current
segment's layer inputs as its cache) draw ``--n`` images, with the cache and without it (every step recomputes the
whole prefix), from the same seed; the script prints seconds, the speed-up of the cache, and checks that both paths
drew the same tokens. Without the cache the 784-token grid costs O(N²) forwards, so it runs only with
``--uncached-784``.

Training step: one forward + backward of a batch of ``--batch`` 28×28 images as 784 tokens: GPT attends over the
full 784-token context, Transformer-XL over segments of ``--segment`` tokens with a memory of ``--segment`` tokens.
It reports the median step time and the activation memory autograd saves for the backward pass (bytes of the
distinct storages it keeps, parameters excluded: the part of training memory that grows with the context; measured
with ``saved_tensors_hooks``, so it does not depend on the allocator or the device). Figures are printed as ratios
XL / GPT from the same run; nothing is asserted.

Usage: python benchmarks/transformer_sampling.py [--n 16] [--threads 1] [--batch 16] [--segment 196]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.transformer.gpt import GPT  # noqa: E402
from models.transformer.transformer_xl import TransformerXL  # noqa: E402

WIDTH = {"n_layer": 2, "n_head": 4, "n_embd": 64}  # the `generative` suite's transformers track


def build(name: str, token_size: int, segment: int) -> torch.nn.Module:
    """``gpt`` (2 × 64) or the parameter-matched ``transformer-xl`` on 28×28 images with token_size² tokens."""
    torch.manual_seed(0)
    gpt_hparams = {**WIDTH, "token_size": token_size}
    if name == "gpt":
        return GPT(image_shape=(1, 28, 28), **gpt_hparams).eval()
    xl = TransformerXL.gpt_matched_hparams((1, 28, 28), **gpt_hparams)
    return TransformerXL(**xl, segment_len=segment, mem_len=segment).eval()


def time_sampling(model: torch.nn.Module, n: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    """Seconds to draw ``n`` token sequences from seed 0, and the tokens."""
    start = time.perf_counter()
    tokens = model.generate_tokens(n, torch.Generator().manual_seed(0), use_cache=use_cache)
    return time.perf_counter() - start, tokens


def training_step(name: str, batch: int, segment: int, steps: int) -> dict[str, Any]:
    """Activation bytes saved for backward and median seconds of forward + backward steps at 784 tokens.

    The saved bytes are summed over the distinct storages autograd keeps for the backward pass (the activation
    memory of training, independent of the allocator and of the device); parameters are not counted.
    """
    model = build(name, 28, segment).train()
    images = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # (B, 1, 28, 28)
    tokens = model.tokenizer.encode(images)  # (B, 784)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    times = []
    for step in range(steps):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        record = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if step == 0 else nullcontext()
        with record:
            loss = torch.nn.functional.cross_entropy(model.image_logits(tokens).flatten(0, 1), tokens.flatten())
        loss.backward()
        times.append(time.perf_counter() - start)
    return {"params": model.num_parameters(), "saved_mib": sum(saved.values()) / 2**20,
            "step_s": statistics.median(times[1:] or times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="images drawn per sampling measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--batch", type=int, default=16, help="images per training step")
    parser.add_argument("--segment", type=int, default=196, help="Transformer-XL segment and memory length at 784")
    parser.add_argument("--steps", type=int, default=4, help="training steps per model (median of all but the first)")
    parser.add_argument("--uncached-784", action="store_true", help="also time uncached sampling at 784 tokens")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); gpt {WIDTH} and the parameter-matched transformer-xl")
    print(f"\nSampling {args.n} images from seed 0 (seconds)")
    print(f"{'model':<15} {'tokens':>6} {'segment/mem':>11} {'params':>8} {'cached':>8} {'uncached':>9} "
          f"{'speed-up':>8} {'same tokens':>11}")
    cached_s: dict[tuple[str, int], float] = {}
    for token_size, segment in ((14, 49), (28, args.segment)):
        for name in ("gpt", "transformer-xl"):
            model = build(name, token_size, segment)
            fast, tokens = time_sampling(model, args.n, use_cache=True)
            cached_s[name, token_size] = fast
            row = f"{name:<15} {model.seq_len:>6} {segment if name != 'gpt' else '-':>11} " \
                  f"{model.num_parameters():>8,} {fast:>8.2f}"
            if token_size == 14 or args.uncached_784:
                slow, slow_tokens = time_sampling(model, args.n, use_cache=False)
                row += f" {slow:>9.2f} {slow / fast:>7.1f}× {str(torch.equal(tokens, slow_tokens)):>11}"
            else:
                row += f" {'-':>9} {'-':>8} {'-':>11}"
            print(row, flush=True)
    for token_size in (14, 28):
        ratio = cached_s["transformer-xl", token_size] / cached_s["gpt", token_size]
        print(f"cached sampling time XL / GPT at {token_size * token_size} tokens: {ratio:.2f}")

    print(f"\nTraining step at 784 tokens, batch {args.batch}, median of {args.steps - 1} forward + backward "
          f"after a first one that records the activations saved for backward")
    results = {name: training_step(name, args.batch, args.segment, args.steps) for name in ("gpt", "transformer-xl")}
    for name, r in results.items():
        context = "784 (full)" if name == "gpt" else f"{args.segment} + mem {args.segment}"
        print(f"{name:<15} context {context:<16} params {r['params']:>8,}  step {r['step_s']:.3f} s  "
              f"saved activations {r['saved_mib']:.1f} MiB")
    gpt, xl = results["gpt"], results["transformer-xl"]
    print(f"XL / GPT: step time {xl['step_s'] / gpt['step_s']:.2f}, saved activations "
          f"{xl['saved_mib'] / gpt['saved_mib']:.2f}")


if __name__ == "__main__":
    main()
