"""Real image–caption data through Hugging Face ``datasets``: Flickr30k, from the hub or from a local copy.

**Where the data is.** The hub dataset ``nlphuji/flickr30k`` keeps a loading script on its main branch (which
``datasets`` >= 4 no longer runs); the hub's own Parquet conversion of it is on the branch ``refs/convert/parquet``,
as ``TEST/test/0000.parquet`` … ``TEST/test/0008.parquet`` (about 4.3 GB in all, one row per image). Those files are
what this module reads, with the columns of the repository's loader:

* ``image``: ``datasets.Image`` (struct of ``bytes`` and ``path``), the JPEG;
* ``caption``: list of 5 strings, the five human captions of the image;
* ``sentids``: list of 5 strings, their sentence ids;
* ``split``: string, ``train`` / ``val`` / ``test`` (Karpathy & Fei-Fei's split);
* ``img_id``: string, the image id; ``filename``: string, the Flickr file name (e.g. ``1000092795.jpg``).

Without ``data_dir``, the files are fetched with ``huggingface_hub.snapshot_download(repo_id="nlphuji/flickr30k",
repo_type="dataset", revision="refs/convert/parquet", allow_patterns="TEST/test/*.parquet")`` (served from the
Hugging Face cache once downloaded). With ``data_dir`` (or ``$FLICKR30K_DIR``), every ``*.parquet`` file under that
folder is read, in sorted path order; a copy made with ``huggingface-cli download --repo-type dataset
nlphuji/flickr30k --revision refs/convert/parquet --include "TEST/test/*.parquet" --local-dir DIR`` is laid out
that way. Both paths read the files with ``datasets.load_dataset("parquet", ...)``.

**What a batch holds.** ``image`` (B, 3, S, S) in [0, 1]: each image converted to RGB, center-cropped to a square of
its shorter side, resized to S = ``image_size`` with PIL's antialiased bicubic filter and rounded to uint8 (then
/255). ``text`` (B, L) long: the ``caption_index``-th caption of the image, lower-cased, split into words and single
punctuation marks (regex ``[a-z0-9]+|[^\\sa-z0-9]``), mapped through a vocabulary of the ``vocab_size`` - 2 most
frequent tokens of **all five captions of the training images** (ties in alphabetical order) plus ``<pad>`` = 0 and
``<unk>`` = 1, truncated or right-padded to L = ``text_length``. ``label`` (B,): Flickr30k has no classes, so
every label is 0 (``num_classes = 1``; class-based metrics such as ``coherence`` do not apply).
:meth:`HFCaptionDataModule.caption_strings` returns the raw caption strings in batch order.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from datamodules.base import SPLITS, BenchDataModule, DataSpec, DataUnavailableError, SplitCaptionsMixin
from datamodules.registry import DATAMODULES

PAD, UNK = 0, 1
_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def caption_tokens(caption: str) -> list[str]:
    """Lower-cased words and single punctuation marks of ``caption``."""
    return _TOKEN_RE.findall(caption.lower())


def build_vocab(captions: Iterable[str], size: int) -> dict[str, int]:
    """Token → id of the ``size - 2`` most frequent tokens of ``captions`` (ties alphabetical), after ``<pad>`` = 0
    and ``<unk>`` = 1."""
    if size < 3:
        raise ValueError(f"vocab_size must be >= 3 (<pad>, <unk> and one word), got {size}")
    counts = Counter(tok for caption in captions for tok in caption_tokens(caption))
    ranked = sorted(counts, key=lambda tok: (-counts[tok], tok))[: size - 2]
    return {"<pad>": PAD, "<unk>": UNK, **{tok: i + 2 for i, tok in enumerate(ranked)}}


def tokenize(captions: list[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    """(N, length) long token ids of ``captions`` (unknown tokens → ``<unk>``), truncated or right-padded with 0."""
    out = torch.full((len(captions), length), PAD, dtype=torch.long)
    for i, caption in enumerate(captions):
        ids = [vocab.get(tok, UNK) for tok in caption_tokens(caption)][:length]
        if ids:
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def square_resize(image: Any, size: int) -> np.ndarray:
    """A PIL image → (size, size, 3) uint8: RGB, center crop to the shorter side, PIL bicubic resize (antialiased)."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(square, dtype=np.uint8)


class HFCaptionDataModule(SplitCaptionsMixin, BenchDataModule):
    """Base of image–caption datasets stored as Parquet files with an image column, a caption column (a string or
    a list of strings) and a split column. See the module docstring for what a batch holds.

    Args:
        data_dir: Local folder with the Parquet files; None: ``$<env_var>``, else fetch them from the hub.
        image_size: Side S of the square images.
        text_length: Tokens per caption L.
        vocab_size: Vocabulary size including ``<pad>`` and ``<unk>``.
        caption_index: Which of an image's captions is its caption.
        max_per_split: Keep only the first this-many images of each split (file order); None keeps all.
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    data_source = "hub: Hugging Face datasets (data_dir for a local copy)"

    hub_id: ClassVar[str]
    revision: ClassVar[str | None] = None
    allow_patterns: ClassVar[str] = "*.parquet"
    image_column: ClassVar[str] = "image"
    caption_column: ClassVar[str] = "caption"
    split_column: ClassVar[str] = "split"
    #: Value of the split column → the suite's split name.
    split_values: ClassVar[dict[str, str]] = {"train": "train", "val": "val", "test": "test"}
    env_var: ClassVar[str]

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int = 32,
        text_length: int = 24,
        vocab_size: int = 5000,
        caption_index: int = 0,
        max_per_split: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if image_size < 1 or text_length < 1:
            raise ValueError(f"image_size and text_length must be >= 1, got {image_size} and {text_length}")
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 (<pad>, <unk> and one word), got {vocab_size}")
        if caption_index < 0:
            raise ValueError(f"caption_index must be >= 0, got {caption_index}")
        self.save_hyperparameters()
        self.data_dir = data_dir or os.environ.get(self.env_var)
        self.image_size, self.text_length, self.vocab_size = image_size, text_length, vocab_size
        self.caption_index, self.max_per_split = caption_index, max_per_split
        self.vocab: dict[str, int] = {}
        self.captions: dict[str, list[str]] = {}

    # ------------------------------------------------------------------------------------------------- files
    def parquet_files(self) -> list[str]:
        """The Parquet files to read: under ``data_dir``, else the hub snapshot (downloaded or cached).

        Raises:
            DataUnavailableError: The folder holds no Parquet file, or the hub cannot be reached and nothing is cached.
        """
        if self.data_dir is not None:
            root = Path(self.data_dir)
            files = sorted(str(p) for p in root.rglob("*.parquet"))
            if not files:
                raise DataUnavailableError(
                    f"{self.hub_id}: {root} holds no *.parquet files; {self._fetch_hint()}"
                )
            return files
        from huggingface_hub import snapshot_download

        try:
            local = snapshot_download(
                repo_id=self.hub_id, repo_type="dataset", revision=self.revision, allow_patterns=self.allow_patterns
            )
        except Exception as err:  # offline, not cached, no network: all mean "not available"
            raise DataUnavailableError(
                f"{self.hub_id}: the hub is not reachable and the files are not cached ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). {self._fetch_hint()}"
            ) from err
        files = sorted(str(p) for p in Path(local).rglob("*.parquet"))
        if not files:
            raise DataUnavailableError(f"{self.hub_id}: the hub snapshot holds no {self.allow_patterns} files")
        return files

    def _fetch_hint(self) -> str:
        revision = f" --revision {self.revision}" if self.revision else ""
        return (
            f"download the files on a machine with network (`huggingface-cli download --repo-type dataset "
            f"{self.hub_id}{revision} --include \"{self.allow_patterns}\" --local-dir DIR`) and pass data_dir=DIR "
            f"or set ${self.env_var}=DIR"
        )

    # ------------------------------------------------------------------------------------------------- loading
    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        import datasets

        files = self.parquet_files()
        ds = datasets.load_dataset("parquet", data_files=files, split="train")  # one table, rows in file order
        missing = {self.image_column, self.caption_column, self.split_column} - set(ds.column_names)
        if missing:
            raise DataUnavailableError(
                f"{self.hub_id}: the Parquet files have no columns {sorted(missing)} (found {ds.column_names})"
            )
        split_of_row = [self.split_values.get(v) for v in ds[self.split_column]]
        rows = {s: [i for i, v in enumerate(split_of_row) if v == s][: self.max_per_split] for s in SPLITS}
        empty = [s for s in SPLITS if not rows[s]]
        if empty:
            raise DataUnavailableError(f"{self.hub_id}: no rows whose {self.split_column!r} is one of {empty}")

        all_captions = {s: [self._caption_list(c) for c in ds.select(rows[s])[self.caption_column]] for s in SPLITS}
        self.vocab = build_vocab((c for caps in all_captions["train"] for c in caps), self.vocab_size)
        out = {}
        for split in SPLITS:
            self.captions[split] = [self._pick(caps) for caps in all_captions[split]]
            images = np.stack(
                [square_resize(row[self.image_column], self.image_size)
                 for row in ds.select(rows[split]).select_columns([self.image_column])]
            )  # (N, S, S, 3) uint8
            out[split] = {
                "image": torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0),  # (N, 3, S, S)
                "text": tokenize(self.captions[split], self.vocab, self.text_length),  # (N, L)
                "label": torch.zeros(len(images), dtype=torch.long),  # (N,): no classes
            }
        return out

    @staticmethod
    def _caption_list(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else [str(c) for c in value]

    def _pick(self, captions: list[str]) -> str:
        if self.caption_index >= len(captions):
            raise DataUnavailableError(
                f"{self.hub_id}: caption_index={self.caption_index} but an image has only {len(captions)} captions"
            )
        return captions[self.caption_index]

    def data_spec(self) -> DataSpec:
        self.setup()  # the vocabulary is built from the training captions
        return DataSpec.captioned((3, self.image_size, self.image_size), 1, self.vocab, self.text_length)


@DATAMODULES.register("flickr30k")
class Flickr30kDataModule(HFCaptionDataModule):
    """Flickr30k (hub ``nlphuji/flickr30k``, its Parquet conversion; see the module docstring); local folder via
    ``data_dir`` or ``$FLICKR30K_DIR``. Splits: Karpathy's ``train`` / ``val`` / ``test``."""

    hub_id = "nlphuji/flickr30k"
    revision = "refs/convert/parquet"
    allow_patterns = "TEST/test/*.parquet"
    env_var = "FLICKR30K_DIR"
