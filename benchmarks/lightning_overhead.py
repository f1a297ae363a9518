"""The Lightning training loop against a plain PyTorch loop: same model, data, seed and number of steps.

For ``dcgan`` (manual optimization: the model's own ``training_step`` with its two optimizers) and a fusion
classifier (``mid-concat``, automatic optimization), both from the ``quick`` / ``fusion`` suites' settings:

* **plain**: ``for batch in loader: model.training_step(batch, i)`` with the optimizers from
  ``configure_optimizers``, ``manual_backward`` = ``loss.backward()`` and logging switched off (automatic
  optimization: ``zero_grad`` / ``backward`` / ``step`` around ``training_step``);
* **lightning (runner)**: ``bench.runner._trainer``'s Trainer — CSV logger at every step, the divergence
  monitor, resumable checkpoints every 100 batches and when training ends — as ``bench run`` trains a unit;
* **lightning (bare)**: the same Trainer without logger, checkpoints or callbacks.

Each is timed over ``--epochs`` epochs (validation off), after one warm-up run of each, best of ``--reps``,
interleaved; prints seconds and the
ratio to the plain loop (goal ≤ 1.05), and whether the final weights equal the plain loop's (same RNG use).

Usage: python benchmarks/lightning_overhead.py [--epochs 3] [--reps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

from bench.resume import UnitCheckpoint
from bench.runner import RunOptions, _quiet_lightning, _trainer
from bench.spec import TrackSpec, TrainerSpec
from datamodules import DATAMODULES
from models import MODELS

CASES = {
    "dcgan": ("digits", {"image_size": 16, "batch_size": 64}, {"latent_dim": 32, "width": 32}),
    "mid-concat": ("captioned-digits", {"batch_size": 64}, {}),
}


def _setup(name: str, seed: int):
    dm_name, dm_args, hparams = CASES[name]
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = DATAMODULES.get(dm_name)(**dm_args)
    dm.setup()
    model = MODELS.get(name).from_data(dm.data_spec(), **hparams)
    return model, dm


def plain(name: str, epochs: int, seed: int) -> torch.nn.Module:
    model, dm = _setup(name, seed)
    opts = model.configure_optimizers()
    opts = opts if isinstance(opts, (list, tuple)) else [opts]
    opts = [o["optimizer"] if isinstance(o, dict) else o for o in opts]
    model.log = model.log_dict = lambda *a, **k: None  # noqa: E731
    model.train()
    if not model.automatic_optimization:
        model.optimizers = lambda: opts  # noqa: E731
        model.manual_backward = lambda loss, *a, **k: loss.backward()  # noqa: E731
    loader = dm.train_dataloader()
    for _ in range(epochs):
        for i, batch in enumerate(loader):
            if model.automatic_optimization:
                opts[0].zero_grad(set_to_none=True)
                loss = model.training_step(batch, i)
                loss = loss["loss"] if isinstance(loss, dict) else loss
                loss.backward()
                opts[0].step()
            else:
                model.training_step(batch, i)
    return model


def lightning(name: str, epochs: int, seed: int, runner: bool) -> torch.nn.Module:
    model, dm = _setup(name, seed)
    with tempfile.TemporaryDirectory() as tmp:
        if runner:
            track = TrackSpec(name="bench", primary_metric="fid", metrics=(), datamodules={}, models={},
                              trainer=TrainerSpec(max_epochs=epochs, limit_val_batches=0))
            ckpt = UnitCheckpoint(Path(tmp) / "ckpt", track.trainer.checkpoint_every_n_batches)
            trainer = _trainer(track, model, RunOptions(out_dir=Path(tmp), accelerator="cpu"), "bench", seed, ckpt)
        else:
            trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, limit_val_batches=0, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 num_sanity_val_steps=0, deterministic=True)
        trainer.fit(model, datamodule=dm)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _quiet_lightning()
    warnings.filterwarnings("ignore")
    variants = {"plain": lambda n: plain(n, args.epochs, args.seed),
                "lightning (runner)": lambda n: lightning(n, args.epochs, args.seed, True),
                "lightning (bare)": lambda n: lightning(n, args.epochs, args.seed, False)}
    print(f"{args.epochs} epochs, best of {args.reps}, {args.threads} thread(s)")
    for name in CASES:
        for fn in variants.values():  # warm-up (imports, allocator, first-call costs)
            fn(name)
        times: dict[str, list[float]] = {v: [] for v in variants}
        finals: dict[str, dict[str, torch.Tensor]] = {}
        for _ in range(args.reps):
            for variant, fn in variants.items():
                start = time.perf_counter()
                model = fn(name)
                times[variant].append(time.perf_counter() - start)
                finals[variant] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        base = min(times["plain"])
        for variant, ts in times.items():
            same = all(torch.equal(finals[variant][k], finals["plain"][k]) for k in finals["plain"])
            print(f"{name:11s} {variant:19s} {min(ts):7.2f} s  ratio {min(ts) / base:5.3f}  "
                  f"final weights equal plain: {same}")


if __name__ == "__main__":
    main()
