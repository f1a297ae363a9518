"""What resumability costs, and what a kill -9 loses.

For the ``quick`` suite's generators (``dcgan`` and ``vae`` on the 16×16 digits, 15 epochs of 20 batches = 300
training batches), in one process:

* **overhead**: training time with :class:`bench.resume.UnitCheckpoint` (an atomic ``last.ckpt`` every
  ``--every`` batches and when training ends, as ``bench run`` trains) against the same Trainer without it; best
  of ``--reps``, interleaved; goal ≤ 1.05;
* **kill half-way**: the run is stopped at training batch 150 (an exception raised at the batch's start, as a
  kill -9 would stop it: nothing after it runs), a fresh model and Trainer resume from ``last.ckpt``, and the
  script prints the batches trained twice (killed at 150 minus the last checkpoint's batch, or all 150 when the
  kill came before the first checkpoint; goal ≤ one checkpoint interval), the seconds lost (killed + resumed − uninterrupted) and whether the resumed final weights equal the
  uninterrupted ones.

Usage: python benchmarks/checkpoint_overhead.py [--every 100] [--reps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

from bench.resume import LAST_CKPT, UnitCheckpoint
from bench.runner import _quiet_lightning
from datamodules import DATAMODULES
from models import MODELS

CASES = {"dcgan": {"latent_dim": 32, "width": 32}, "vae": {"latent_dim": 16, "width": 32}}
EPOCHS, KILL_AT = 15, 150


class _Stop(Exception):
    pass


class _StopAt(pl.Callback):
    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.seen == self.at:
            raise _Stop
        self.seen += 1


class _Count(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args) -> None:  # noqa: ANN002
        self.batches += 1


def _fit(name: str, callbacks: list[pl.Callback], ckpt_path: Path | None = None) -> torch.nn.Module:
    pl.seed_everything(0, workers=True, verbose=False)
    dm = DATAMODULES.get("digits")(image_size=16, batch_size=64)
    dm.setup()
    model = MODELS.get(name).from_data(dm.data_spec(), **CASES[name])
    trainer = pl.Trainer(accelerator="cpu", max_epochs=EPOCHS, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, deterministic=True, callbacks=callbacks)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    except _Stop:
        pass
    return model


def _timed(fn) -> tuple[float, torch.nn.Module]:
    start = time.perf_counter()
    model = fn()
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _quiet_lightning()
    warnings.filterwarnings("ignore")
    print(f"{EPOCHS} epochs × 20 batches, checkpoint every {args.every} batches + at the end, best of {args.reps}")
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            off, on = [], []
            _fit(name, [])  # warm-up
            for rep in range(args.reps):
                off.append(_timed(lambda: _fit(name, []))[0])
                ckpt = UnitCheckpoint(Path(tmp) / f"on{rep}", args.every)
                on.append(_timed(lambda: _fit(name, [ckpt]))[0])
            print(f"{name:6s} overhead: off {min(off):6.2f} s, on {min(on):6.2f} s ({ckpt.saves} saves), "
                  f"ratio {min(on) / min(off):5.3f}")

            t_full, full = _timed(lambda: _fit(name, [UnitCheckpoint(Path(tmp) / "full", args.every)]))
            killed_ckpt = UnitCheckpoint(Path(tmp) / "killed", args.every)
            t_killed, _ = _timed(lambda: _fit(name, [killed_ckpt, _StopAt(KILL_AT)]))
            count = _Count()
            last = Path(tmp) / "killed" / LAST_CKPT  # none yet when the kill came before the first interval
            t_resumed, resumed = _timed(lambda: _fit(name, [UnitCheckpoint(Path(tmp) / "killed", args.every), count],
                                                     last if last.is_file() else None))
            redone = KILL_AT - (EPOCHS * 20 - count.batches)
            same = all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
            print(f"{name:6s} kill at batch {KILL_AT}: {redone} batches trained twice (interval {args.every}), "
                  f"{t_killed + t_resumed - t_full:5.2f} s lost (killed {t_killed:.2f} + resumed {t_resumed:.2f} − "
                  f"uninterrupted {t_full:.2f}); final weights equal: {same}")


if __name__ == "__main__":
    main()
