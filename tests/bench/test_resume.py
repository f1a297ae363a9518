"""bench.resume: a unit killed during training and resumed from its checkpoint ends with the same final weights
as one that never stopped — for a GAN with manual optimization, n_critic > 1 and an EMA generator, and for a VAE,
from mid-epoch and from end-of-epoch checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from bench.resume import LAST_CKPT, UnitCheckpoint, rng_states, set_rng_states
from datamodules import DATAMODULES
from datamodules.resumable import ResumableDataLoader, ResumableRandomSampler
from models import MODELS
from tests.models.tester import assert_state_dicts_equal


class _Killed(Exception):
    """Stands in for kill -9 at a chosen training batch (nothing after it runs)."""


class _KillAt(pl.Callback):
    def __init__(self, global_batch: int) -> None:
        self.global_batch = global_batch
        self.seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.seen == self.global_batch:
            raise _Killed
        self.seen += 1

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if self.global_batch >= self.seen:  # past the last batch: killed after training, e.g. while scoring
            raise _Killed


def _trainer(tmp: Path, ckpt: UnitCheckpoint, extra: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=7, limit_val_batches=2, deterministic=True,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(tmp), callbacks=[ckpt, *(extra or [])],
    )


def _build(name: str, hparams: dict[str, Any]):
    pl.seed_everything(3, workers=True, verbose=False)
    dm = DATAMODULES.get("digits")(image_size=16, batch_size=16)
    dm.setup()
    return MODELS.get(name).from_data(dm.data_spec(), **hparams), dm


def _train(name: str, hparams: dict[str, Any], tmp: Path, kill_at: int | None, every: int) -> dict[str, torch.Tensor]:
    model, dm = _build(name, hparams)
    ckpt = UnitCheckpoint(tmp / "ckpt", every_n_batches=every)
    if kill_at is not None:
        with pytest.raises(_Killed):
            _trainer(tmp, ckpt, [_KillAt(kill_at)]).fit(model, datamodule=dm)
        assert (tmp / "ckpt" / LAST_CKPT).is_file()
        # a fresh process: new model, new datamodule, whatever the RNG is now
        torch.manual_seed(12345)
        model, dm = _build(name, hparams)
        torch.manual_seed(999)
        ckpt = UnitCheckpoint(tmp / "ckpt", every_n_batches=every)
        _trainer(tmp, ckpt).fit(model, datamodule=dm, ckpt_path=tmp / "ckpt" / LAST_CKPT, weights_only=True)
    else:
        _trainer(tmp, ckpt).fit(model, datamodule=dm)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


CASES = {
    # manual optimization, 2 critic steps per generator step, EMA generator, batch counter buffer
    "wgan-gp": {"latent_dim": 8, "width": 8, "n_critic": 2, "ema_decay": 0.9},
    # stochastic encoder (reparameterization noise from the global RNG)
    "vae": {"latent_dim": 4, "width": 8},
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("every, kill_at", [(3, 5), (3, 11), (0, 8), (7, 9), (3, 14)],
                         ids=["mid-epoch-0", "mid-epoch-1", "epoch-end", "due-at-epoch-end", "after-training"])
def test_resumed_unit_ends_with_the_uninterrupted_weights(name, every, kill_at, tmp_path):
    """7 batches per epoch, 2 epochs. Killed at global batch 5 (resumes from the checkpoint after batch 3), 11
    (from batch 9, in epoch 1), 8 with checkpoints at epoch ends only (from the end of epoch 0), 9 with every 7
    batches (the 7th is an epoch's last, so that save happens at the epoch end), and 14 (never: the final
    checkpoint is written when training ends: killed after it, e.g. while scoring, the resumed fit has nothing
    left to train) — the final state dict
    equals the uninterrupted run's bit for bit."""
    reference = _train(name, CASES[name], tmp_path / "ref", None, every=every)
    resumed = _train(name, CASES[name], tmp_path / "killed", kill_at, every=every)
    assert_state_dicts_equal(reference, resumed)


def test_checkpointing_does_not_change_the_numbers(tmp_path):
    """Saving checkpoints (every batch) leaves the final weights of a run unchanged."""
    a = _train("vae", CASES["vae"], tmp_path / "a", None, every=0)
    b = _train("vae", CASES["vae"], tmp_path / "b", None, every=1)
    assert_state_dicts_equal(a, b)


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A save that dies mid-write leaves the previous checkpoint intact and no temporary file."""
    model, dm = _build("vae", CASES["vae"])
    ckpt = UnitCheckpoint(tmp_path / "ckpt", every_n_batches=2)
    with pytest.raises(_Killed):
        _trainer(tmp_path, ckpt, [_KillAt(3)]).fit(model, datamodule=dm)
    before = (tmp_path / "ckpt" / LAST_CKPT).read_bytes()

    def failing_save(self, path, *args, **kwargs):  # noqa: ANN001
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", failing_save)
    model, dm = _build("vae", CASES["vae"])
    with pytest.raises(OSError, match="No space"):
        _trainer(tmp_path, UnitCheckpoint(tmp_path / "ckpt", every_n_batches=2)).fit(model, datamodule=dm)
    assert (tmp_path / "ckpt" / LAST_CKPT).read_bytes() == before
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_resumable_loader_has_the_shuffle_true_order():
    """The sampler draws as torch's RandomSampler does: same batches and same global RNG afterwards as
    DataLoader(shuffle=True), across epochs."""
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.arange(53))

    def run(make):
        torch.manual_seed(5)
        loader = make()
        batches = [b.tolist() for _ in range(3) for (b,) in loader]
        return batches, torch.rand(3)

    ours = run(lambda: ResumableDataLoader(ds, batch_size=8, sampler=ResumableRandomSampler(ds)))
    theirs = run(lambda: DataLoader(ds, batch_size=8, shuffle=True))
    assert ours[0] == theirs[0] and torch.equal(ours[1], theirs[1])


def test_sampler_replays_the_epoch_from_where_it_stopped():
    """load_state_dict(seed, consumed) → the rest of that epoch's permutation, without drawing from the RNG;
    a finished epoch draws a fresh seed."""
    data = list(range(20))
    torch.manual_seed(0)
    sampler = ResumableRandomSampler(data)
    full = list(sampler)
    state = {"seed": sampler.epoch_seed, "consumed": 6}
    again = ResumableRandomSampler(data)
    again.load_state_dict(state)
    before = torch.get_rng_state()
    assert list(again) == full[6:]
    assert torch.equal(torch.get_rng_state(), before)
    done = ResumableRandomSampler(data)
    done.load_state_dict({"seed": state["seed"], "consumed": 20})
    list(done)
    assert not torch.equal(torch.get_rng_state(), before)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    """torch, NumPy and Python states survive torch.save / torch.load(weights_only=True)."""
    import random

    import numpy as np

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
