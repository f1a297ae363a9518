"""A shuffled training loader whose epoch order can be resumed part-way (see :mod:`bench.resume`).

:class:`ResumableRandomSampler` draws its permutation exactly as torch's ``RandomSampler`` does without a
generator (one seed from the global RNG per epoch), so :class:`ResumableDataLoader` yields the same order as
``DataLoader(shuffle=True)``; it remembers the seed and, after ``load_state_dict``, replays the same permutation
from the first index not yet trained on. Lightning saves and restores loaders that have ``state_dict`` /
``load_state_dict`` inside its checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableRandomSampler(Sampler[int]):
    """torch's ``RandomSampler`` (without replacement), whose epoch order can be resumed part-way.

    Each ``__iter__`` draws one seed from torch's global RNG, exactly as ``RandomSampler`` does without a
    generator, so a DataLoader using it yields the same order as ``DataLoader(shuffle=True)``.

    Attributes:
        epoch_seed: The seed of the current epoch's permutation.
        consumed: Indices of the current epoch already trained on (set by :class:`UnitCheckpoint`).
    """

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source
        self.epoch_seed: int | None = None
        self.consumed = 0
        self._pending: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        skip = 0
        if self._pending is not None:
            self.epoch_seed, skip = self._pending["seed"], self._pending["consumed"]
            self._pending = None
        else:
            self.epoch_seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.consumed = skip
        generator = torch.Generator()
        generator.manual_seed(self.epoch_seed)
        yield from torch.randperm(n, generator=generator).tolist()[skip:]

    def state_dict(self) -> dict[str, int]:
        return {"seed": -1 if self.epoch_seed is None else self.epoch_seed, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """The next ``__iter__`` replays epoch seed ``state['seed']`` from index ``state['consumed']``; an epoch
        that was finished (or never started) draws a fresh seed instead."""
        done = state["seed"] < 0 or state["consumed"] >= len(self.data_source)
        self._pending = None if done else {"seed": int(state["seed"]), "consumed": int(state["consumed"])}


class ResumableDataLoader(DataLoader):
    """A DataLoader whose :class:`ResumableRandomSampler` state is saved in and restored from Lightning
    checkpoints (Lightning calls ``state_dict`` / ``load_state_dict`` of loaders that have them)."""

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if isinstance(self.sampler, ResumableRandomSampler) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.sampler, ResumableRandomSampler) and state:
            self.sampler.load_state_dict(state)
