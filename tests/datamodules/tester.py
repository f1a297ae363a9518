"""The shared datamodule tests: the datamodule twin of :class:`tests.models.tester.ModelTesterMixin`.

A datamodule's test class mixes in :class:`DataModuleTesterMixin`, writes its offline fixture and declares the facts
a person checked by hand::

    class TestMNIST(DataModuleTesterMixin):
        datamodule_name = "mnist"
        datamodule_args = {"val_size": 3}
        split_sizes = {"train": 27, "val": 3, "test": 8}
        identity_changes = ({"image_size": 14}, {"val_size": 2})
        missing_hints = ("ylecun/mnist", "huggingface-cli download")

        def make_data(self, root):
            write_hub_parquet(root, ...)
            return {"data_dir": str(root)}

Every check below then runs on it: fixed split sizes, disjoint splits, tensors and batches that match
``data_spec()``, split contents independent of the run's seed while the training order follows it,
``split_tensors`` equal to what the dataloaders yield, a one-line :class:`DataUnavailableError` naming what is
missing and how to get it, and an ``identity()`` that changes exactly when the data does.

The helpers (:func:`example_hashes`, :func:`cross_split_duplicates`, :func:`assert_matches_spec`, ...) are plain
functions so that tests can check the checks themselves on planted defects.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from bench.errors import InputError  # noqa: E402
from datamodules import DATAMODULES, BenchDataModule, DataSpec, DataUnavailableError  # noqa: E402
from datamodules.base import SPLITS  # noqa: E402

#: The tensors that make up an example's inputs (the label is not part of what must not repeat across splits).
INPUT_KEYS = ("image", "text")
#: Constructor arguments that change how the data is served, never the data (left out of ``identity()``).
LOADER_ARGS = frozenset({"batch_size", "num_workers"})
#: Longest one-line missing-data message accepted (a paragraph is not a one-line error).
MAX_MESSAGE_CHARS = 1000
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


# ----------------------------------------------------------------------------------------------------- helpers
def example_hashes(tensors: dict[str, torch.Tensor]) -> list[str]:
    """One SHA-1 per example over the bytes of its input tensors (``image``, then ``text`` when present).

    Args:
        tensors: A split's tensors, e.g. ``dm.split_tensors("test")``; every one has the examples on dim 0.
    """
    keys = [k for k in INPUT_KEYS if k in tensors]
    assert keys, f"a split must hold at least one of {INPUT_KEYS}, got {sorted(tensors)}"
    n = len(tensors[keys[0]])
    rows = [tensors[k].detach().cpu().contiguous().reshape(n, -1).numpy() for k in keys]  # (N, D_k) each
    out = []
    for i in range(n):
        h = hashlib.sha1()
        for k, row in zip(keys, rows):
            h.update(k.encode())
            h.update(row[i].tobytes())
        out.append(h.hexdigest())
    return out


def cross_split_duplicates(splits: dict[str, dict[str, torch.Tensor]]) -> dict[tuple[str, str], int]:
    """Number of distinct examples (by :func:`example_hashes`) found in both splits of each pair that has any."""
    hashes = {s: set(example_hashes(t)) for s, t in splits.items()}
    found = {(a, b): len(hashes[a] & hashes[b]) for a, b in PAIRS}
    return {pair: n for pair, n in found.items() if n}


def assert_matches_spec(tensors: dict[str, torch.Tensor], spec: DataSpec, where: str) -> None:
    """``tensors`` (a split or a batch) hold exactly the keys, shapes, dtypes and value ranges ``spec`` promises.

    Images: float32 (N, *image_shape), finite, in [0, 1]. Labels: long (N,) in [0, num_classes). Text (when a
    modality): long (N, text_length) in [0, vocab_size), with ``id_to_word`` naming every id (id 0 ``<pad>``).
    """
    assert set(tensors) == {*spec.modalities, "label"}, \
        f"{where}: keys {sorted(tensors)} != modalities {spec.modalities} + label"
    assert spec.modalities[0] == "image", f"{where}: the image is the first modality, got {spec.modalities}"
    n = len(tensors["label"])
    assert n > 0, f"{where} is empty"

    image = tensors["image"]
    assert image.dtype == torch.float32, f"{where}: image dtype {image.dtype}"
    assert tuple(image.shape) == (n, *spec.image_shape), \
        f"{where}: image {tuple(image.shape)} != (N, {spec.image_shape})"
    assert torch.isfinite(image).all(), f"{where}: non-finite pixels"
    assert image.min() >= 0 and image.max() <= 1, f"{where}: pixels in [{image.min()}, {image.max()}], not [0, 1]"

    label = tensors["label"]
    assert label.dtype == torch.long and label.shape == (n,), f"{where}: label {label.dtype} {tuple(label.shape)}"
    assert spec.num_classes >= 1
    assert label.min() >= 0 and label.max() < spec.num_classes, \
        f"{where}: labels in [{label.min()}, {label.max()}], num_classes {spec.num_classes}"

    if "text" in spec.modalities:
        text = tensors["text"]
        assert text.dtype == torch.long, f"{where}: text dtype {text.dtype}"
        assert tuple(text.shape) == (n, spec.text_length), \
            f"{where}: text {tuple(text.shape)} != (N, {spec.text_length})"
        assert text.min() >= 0 and text.max() < spec.vocab_size, \
            f"{where}: token ids in [{text.min()}, {text.max()}], vocab_size {spec.vocab_size}"
        assert len(spec.id_to_word) == spec.vocab_size, \
            f"{where}: id_to_word names {len(spec.id_to_word)} ids, vocab_size is {spec.vocab_size}"
        assert spec.id_to_word[0] == "<pad>", f"{where}: id 0 is {spec.id_to_word[0]!r}, not <pad>"
    else:
        assert spec.vocab_size == 0 and spec.text_length == 0 and not spec.id_to_word, \
            f"{where}: a spec without a text modality has vocab_size/text_length/id_to_word"


def concat_batches(loader: DataLoader) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Every batch of ``loader`` concatenated per key, and the batch sizes in order."""
    parts: dict[str, list[torch.Tensor]] = {}
    sizes = []
    for batch in loader:
        sizes.append(len(batch["label"]))
        for key, value in batch.items():
            parts.setdefault(key, []).append(value)
    return {k: torch.cat(v) for k, v in parts.items()}, sizes


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], where: str) -> None:
    assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
    for key in a:
        assert a[key].dtype == b[key].dtype, f"{where}: {key} dtype {a[key].dtype} != {b[key].dtype}"
        assert torch.equal(a[key], b[key]), f"{where}: {key} differs"


def data_differs(a: BenchDataModule, b: BenchDataModule) -> bool:
    """Whether any split of ``a`` holds other tensors (shape, dtype or values) than the same split of ``b``."""
    for split in SPLITS:
        ta, tb = a.split_tensors(split), b.split_tensors(split)
        if ta.keys() != tb.keys():
            return True
        for key in ta:
            if ta[key].shape != tb[key].shape or ta[key].dtype != tb[key].dtype or not torch.equal(ta[key], tb[key]):
                return True
    return False


def epoch_order(dm: BenchDataModule, seed: int) -> list[str]:
    """Example hashes of one shuffled training epoch, in the order ``train_dataloader`` yields them after
    ``seed_everything(seed)`` (as the runner seeds a run)."""
    pl.seed_everything(seed, verbose=False)
    tensors, _ = concat_batches(dm.train_dataloader())
    return example_hashes(tensors)


# ------------------------------------------------------------------------------------------------------ mixin
class DataModuleTesterMixin:
    """Shared checks for every registered datamodule. Subclasses set the class attributes below and, when the
    data is not embedded, write their offline fixture in :meth:`make_data`."""

    #: Registered datamodule name (``DATAMODULES.get(datamodule_name)``).
    datamodule_name: ClassVar[str]
    #: Constructor arguments on top of those :meth:`make_data` returns (keep the data tiny).
    datamodule_args: ClassVar[dict[str, Any]] = {}
    #: Batch size of the dataloaders in the checks.
    batch_size: ClassVar[int] = 4
    #: Number of examples per split on the fixture, counted by hand from how the fixture is written.
    split_sizes: ClassVar[dict[str, int]]
    #: Examples the source data really has in two splits, ``{("train", "test"): n}``; each entry needs a comment
    #: saying where the duplicates come from. Anything else found is a leak between splits.
    known_duplicates: ClassVar[dict[tuple[str, str], int]] = {}
    #: Argument overrides that each change the data (checked: they do), so each must change ``identity()``.
    identity_changes: ClassVar[tuple[dict[str, Any], ...]] = ()
    #: Substrings every missing-data message must hold besides the missing path: how to get the data.
    missing_hints: ClassVar[tuple[str, ...]] = ("data_dir",)
    #: Environment variables that point the datamodule at a local copy; unset during the checks.
    env_vars: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------------------------------ subclass hooks
    def make_data(self, root: Path) -> dict[str, Any]:
        """Writes the offline fixture under ``root`` (an empty folder) and returns the constructor arguments that
        read it (e.g. ``{"data_dir": str(root)}``). The default is for embedded data: nothing to write."""
        return {}

    def hide_default_sources(self, monkeypatch: pytest.MonkeyPatch, empty: Path) -> None:
        """Makes every place the datamodule looks at without ``data_dir`` empty (``empty`` is an empty folder);
        the hub is already unreachable (offline mode). The default unsets :attr:`env_vars`."""
        for var in self.all_env_vars():
            monkeypatch.delenv(var, raising=False)

    def remove_part(self, root: Path) -> str | None:
        """Deletes one required part of a copy of the fixture at ``root`` and returns a substring the error must
        hold (naming the missing part); None when the datamodule has no separable parts."""
        return None

    # ------------------------------------------------------------------------------------------------ helpers
    @classmethod
    def dm_class(cls) -> type[BenchDataModule]:
        return DATAMODULES.get(cls.datamodule_name)

    @classmethod
    def all_env_vars(cls) -> tuple[str, ...]:
        own = getattr(cls.dm_class(), "env_var", None)
        return tuple(dict.fromkeys([*cls.env_vars, *([own] if own else [])]))

    @classmethod
    def accepts(cls, argument: str) -> bool:
        return argument in inspect.signature(cls.dm_class().__init__).parameters

    def make(self, data_args: dict[str, Any], **overrides: Any) -> BenchDataModule:
        """A fresh datamodule on the fixture (not set up)."""
        return self.dm_class()(**{"batch_size": self.batch_size, **data_args, **overrides})

    @pytest.fixture(scope="class")
    def isolated(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
        """For the whole class: `datasets`' cache in a temp folder, the user's data folders out of sight."""
        import datasets

        assert datasets.config.HF_HUB_OFFLINE, "tests must run with HF_HUB_OFFLINE=1 (see tests/conftest.py)"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-cache"))
            for var in self.all_env_vars():
                mp.delenv(var, raising=False)
            yield tmp_path_factory.mktemp(f"{self.datamodule_name}-data")

    @pytest.fixture(scope="class")
    def data_args(self, isolated: Path) -> dict[str, Any]:
        return {**self.make_data(isolated), **self.datamodule_args}

    @pytest.fixture(scope="class")
    def dm(self, data_args: dict[str, Any]) -> BenchDataModule:
        dm = self.make(data_args)
        dm.setup()
        return dm

    def check_missing(self, build: Any, *needles: str) -> str:
        """``build().setup()`` raises a one-line DataUnavailableError holding every needle and hint; returns it."""
        with pytest.raises(DataUnavailableError) as info:  # any other exception fails the test with its traceback
            build().setup()
        err = info.value
        assert isinstance(err, InputError)  # the CLI prints it as one `bench: error:` line, exit code 2
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message, message
        assert len(message) <= MAX_MESSAGE_CHARS, f"{len(message)} chars: {message}"
        for needle in (*needles, *self.missing_hints):
            assert needle in message, f"{needle!r} not in: {message}"
        return message

    # -------------------------------------------------------------------------------------------------- checks
    def test_registered(self, dm: BenchDataModule) -> None:
        cls = self.dm_class()
        assert type(dm) is cls and cls.registry_name == self.datamodule_name
        assert isinstance(cls.data_source, str) and cls.data_source
        assert dm.identity().startswith(f"{self.datamodule_name}-")

    def test_split_sizes_are_fixed(self, dm: BenchDataModule, data_args: dict[str, Any]) -> None:
        sizes = {s: len(dm.split_tensors(s)["label"]) for s in SPLITS}
        assert sizes == self.split_sizes
        for split in SPLITS:
            tensors = dm.split_tensors(split)
            assert {len(t) for t in tensors.values()} == {sizes[split]}, f"{split}: tensors of unequal length"
        again = self.make(data_args)
        again.setup()
        assert {s: len(again.split_tensors(s)["label"]) for s in SPLITS} == sizes

    def test_splits_are_disjoint(self, dm: BenchDataModule) -> None:
        found = cross_split_duplicates({s: dm.split_tensors(s) for s in SPLITS})
        assert found == self.known_duplicates, f"examples in two splits (pair: count): {found}"

    def test_tensors_match_data_spec(self, dm: BenchDataModule, data_args: dict[str, Any]) -> None:
        spec = dm.data_spec()
        for split in SPLITS:
            assert_matches_spec(dm.split_tensors(split), spec, f"split {split!r}")
        assert self.make(data_args).data_spec() == spec, "data_spec() differs between two instances"

    def test_batches_match_data_spec(self, dm: BenchDataModule) -> None:
        spec = dm.data_spec()
        loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader(), "test": dm.test_dataloader()}
        for split, loader in loaders.items():
            batch = next(iter(loader))
            assert isinstance(batch, dict)
            assert len(batch["label"]) == min(self.batch_size, len(dm.split_tensors(split)["label"]))
            assert_matches_spec(batch, spec, f"first {split} batch")

    def test_split_contents_do_not_depend_on_the_seed(self, data_args: dict[str, Any]) -> None:
        built = []
        for seed in (0, 1):
            pl.seed_everything(seed, verbose=False)
            dm = self.make(data_args)
            dm.setup()
            built.append(dm)
        for split in SPLITS:
            assert_same_tensors(built[0].split_tensors(split), built[1].split_tensors(split), f"split {split!r}")

    def test_training_order_follows_the_seed(self, dm: BenchDataModule, data_args: dict[str, Any]) -> None:
        """The run's seed (``seed_everything``) fixes the training order; val and test are never shuffled."""
        first = epoch_order(dm, seed=0)
        assert sorted(first) == sorted(example_hashes(dm.split_tensors("train"))), "an epoch is not a permutation"
        other = self.make(data_args)  # a fresh instance with the same seed: the same order
        assert epoch_order(other, seed=0) == first
        pl.seed_everything(0, verbose=False)
        batch_a = next(iter(dm.train_dataloader()))
        pl.seed_everything(0, verbose=False)
        batch_b = next(iter(other.train_dataloader()))
        assert_same_tensors(batch_a, batch_b, "first training batch under the same seed")
        assert epoch_order(dm, seed=1) != first, "a different seed does not change the training order"
        for split in ("val", "test"):  # never shuffled: split order whatever the seed
            for seed in (0, 1):
                pl.seed_everything(seed, verbose=False)
                loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
                assert_same_tensors(concat_batches(loader)[0], dm.split_tensors(split), f"{split} loader, seed {seed}")
        if self.accepts("seed"):  # a datamodule's own seed argument: reorders training, never the test split
            a, b = self.make(data_args, seed=0), self.make(data_args, seed=1)
            assert_same_tensors(a.split_tensors("test"), b.split_tensors("test"), "test split under two seeds")
            assert epoch_order(a, seed=0) != epoch_order(b, seed=0), "the seed argument does not reach the order"

    def test_split_tensors_match_dataloaders(self, dm: BenchDataModule) -> None:
        for split in SPLITS:
            tensors = dm.split_tensors(split)
            n = len(tensors["label"])
            served, sizes = concat_batches(dm.dataloader(split, batch_size=3))
            assert_same_tensors(served, tensors, f"unshuffled {split} loader")
            assert sizes == [3] * (n // 3) + ([n % 3] if n % 3 else []), sizes
        served, _ = concat_batches(dm.train_dataloader())  # shuffled: the same examples, each once
        train = dm.split_tensors("train")
        assert Counter(example_hashes(served)) == Counter(example_hashes(train))
        for key in train:
            assert served[key].dtype == train[key].dtype and served[key].shape == train[key].shape

    def test_missing_data_dir_gives_a_one_line_error(self, data_args: dict[str, Any], tmp_path: Path) -> None:
        if not self.accepts("data_dir"):
            pytest.skip(f"{self.datamodule_name} has no data_dir: its data is embedded ({self.dm_class().data_source})")
        empty, absent = tmp_path / "empty", tmp_path / "does-not-exist"
        empty.mkdir()
        for folder in (empty, absent):
            self.check_missing(lambda: self.make(data_args, data_dir=str(folder)), str(folder))

    def test_no_local_copy_offline_gives_a_one_line_error(
        self, data_args: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if not self.accepts("data_dir"):
            pytest.skip(f"{self.datamodule_name} has no data_dir: its data is embedded ({self.dm_class().data_source})")
        self.hide_default_sources(monkeypatch, tmp_path)
        args = {k: v for k, v in data_args.items() if k != "data_dir"}
        self.check_missing(lambda: self.make(args))

    def test_missing_part_gives_a_one_line_error(
        self, isolated: Path, data_args: dict[str, Any], tmp_path: Path
    ) -> None:
        copy = tmp_path / "partial"
        shutil.copytree(isolated, copy)
        needle = self.remove_part(copy)
        if needle is None:
            pytest.skip(f"{self.datamodule_name}'s fixture has no separable part to remove")
        self.check_missing(lambda: self.make(data_args, data_dir=str(copy)), str(copy), needle)

    def test_identity_names_what_changes_the_data(self, dm: BenchDataModule, data_args: dict[str, Any]) -> None:
        base = dm.identity()
        assert self.make(data_args).identity() == base, "identity() differs between equal instances"
        for loader_args in ({"batch_size": self.batch_size + 3}, {"num_workers": 1}):
            assert self.make(data_args, **loader_args).identity() == base, f"{loader_args} changed identity()"
        params = set(inspect.signature(self.dm_class().__init__).parameters) - {"self"} - LOADER_ARGS
        assert params <= set(dm.hparams), f"constructor arguments missing from identity(): {params - set(dm.hparams)}"
        assert self.identity_changes, "declare at least one argument that changes the data"
        seen = {base}
        for change in self.identity_changes:
            changed = self.make(data_args, **change)
            assert data_differs(changed, dm), f"{change} does not change the data: wrong identity_changes entry"
            assert changed.identity() not in seen, \
                f"{change} changes the data but not identity() ({changed.identity()})"
            seen.add(changed.identity())
