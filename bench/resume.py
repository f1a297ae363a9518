"""Training checkpoints that resume a killed run unit to the same final weights as one that never stopped.

Lightning's checkpoint holds the model, optimizers, schedulers and loop counters; models keep their other training
state (EMA generator, GAN batch counter, VQ codebook statistics, prior counts) in buffers, so it is there too. It
does not hold what decides the *rest* of the run: the RNG states of torch / NumPy / Python (noise, dropout, masks)
and where the shuffled training order stood. :class:`UnitCheckpoint` adds both:

* **RNG states** at the moment of saving. Restoring them is timed so that the first step after the restart sees
  exactly the state the uninterrupted run saw: a checkpoint taken after a training batch restores them just before
  the next batch (Lightning creates data iterators in between, which draw from the global RNG); one taken at the
  end of an epoch restores them on load, before the next epoch's iterators draw.
* **The epoch's order**: :class:`ResumableRandomSampler` draws its permutation exactly as torch's
  ``RandomSampler`` does (one seed from the global RNG per epoch, so the order is the one ``shuffle=True`` gives),
  remembers that seed, and on restart replays the same permutation from the first batch not yet trained on.
  :class:`ResumableDataLoader` exposes that through Lightning's ``state_dict`` / ``load_state_dict`` loader
  protocol, so the state travels inside the checkpoint.

Checkpoints are written atomically (temporary file + ``os.replace``): Lightning's ``ModelCheckpoint`` writes in
place, so a kill during a save leaves a truncated ``last.ckpt``, and it cannot trigger on both steps and epoch ends;
this callback does both, and never saves after an epoch's last batch (that restart point would re-draw the next
epoch's order before validation's iterators drew theirs).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from bench.atomic import temp_path
from datamodules.resumable import ResumableRandomSampler

#: File name of a unit's checkpoint inside its checkpoint folder.
LAST_CKPT = "last.ckpt"
_STATE_KEY = "bench_resume"


def rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states, as tensors and plain values (``weights_only`` loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class UnitCheckpoint(pl.Callback):
    """Saves ``dirpath/last.ckpt`` atomically once ``every_n_batches`` training batches (counted over all epochs)
    have passed since the last save — after a batch, or at the epoch's end when the epoch ends first — and always
    when training ends (so a kill during scoring does not retrain), with the RNG states and the training order
    (see the module docstring); restores them on resume.

    Args:
        dirpath: The unit's checkpoint folder.
        every_n_batches: Training batches between checkpoints (0: at every epoch end).
    """

    def __init__(self, dirpath: Path, every_n_batches: int) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_batches = int(every_n_batches)
        self._restore_before_batch: dict[str, Any] | None = None
        self._where = "batch"
        self._last_saved = 0  # global training batch count at the last save
        self.saves = 0

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CKPT

    def _save(self, trainer: pl.Trainer, where: str) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.path)
        self._where = where
        self._last_saved = self._batches(trainer)
        try:
            trainer.save_checkpoint(tmp)  # every rank calls it (it synchronizes); only global rank 0 writes
            if trainer.is_global_zero:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.saves += 1

    @staticmethod
    def _sampler(trainer: pl.Trainer) -> ResumableRandomSampler | None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        return sampler if isinstance(sampler, ResumableRandomSampler) else None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._restore_before_batch is not None:
            set_rng_states(self._restore_before_batch)
            self._restore_before_batch = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        sampler = self._sampler(trainer)
        if sampler is not None:
            sampler.consumed = (batch_idx + 1) * trainer.train_dataloader.batch_size
        last = batch_idx + 1 >= trainer.num_training_batches or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if self.every_n_batches > 0 and self._due(trainer) and not last:  # an epoch's last batch: at its end
            self._save(trainer, "batch")

    def _due(self, trainer: pl.Trainer) -> bool:
        return self._batches(trainer) - self._last_saved >= self.every_n_batches

    @staticmethod
    def _batches(trainer: pl.Trainer) -> int:
        return trainer.fit_loop.epoch_loop.total_batch_idx + 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = self._sampler(trainer)
        if sampler is not None:
            sampler.consumed = len(sampler)
        final = trainer.current_epoch + 1 >= (trainer.max_epochs or 0) or trainer.should_stop
        if final or self.every_n_batches == 0 or self._due(trainer):
            self._save(trainer, "epoch")

    def state_dict(self) -> dict[str, Any]:
        return {"saves": self.saves, "last_saved": self._last_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_saved = int(state_dict.get("last_saved", 0))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[_STATE_KEY] = {"rng": rng_states(), "where": self._where}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(_STATE_KEY)
        if state is None:
            return
        if state["where"] == "epoch":
            set_rng_states(state["rng"])
        else:
            self._restore_before_batch = state["rng"]
