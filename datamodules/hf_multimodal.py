"""Real image+text classification benchmarks through Hugging Face ``datasets``: Hateful Memes and MM-IMDb.

Both load from the hub or from a local folder of parquet files (``data_dir``, or the dataset's environment
variable), the same way as :mod:`datamodules.hf_images`. Batches are those of ``captioned-digits``:
``{"image": (B, C, S, S) float in [0, 1], "text": (B, L) long, "label": (B,) long}``.

* Images are decoded one at a time and resized to ``image_size``×``image_size`` with PIL's antialiased bilinear
  filter (memes and posters come in many sizes; only the small copies are kept in memory), converted to grayscale
  (``channels=1``) or RGB (``channels=3``).
* Texts are lower-cased and split into words (letters, digits, inner apostrophes). The vocabulary is built from the
  **training** texts only: the ``vocab_size - 2`` most frequent words (ties broken alphabetically) after
  ``<pad>`` = 0 and ``<unk>`` = 1. Token ids are right-padded / truncated to ``text_length``. The raw strings of a
  split are in :meth:`HFMultimodalDataModule.caption_strings`.
* Splits: ``train``, ``val`` and ``test`` map to the dataset's own split names (below). When a copy has no
  validation split, ``val`` is a fixed random subset (seed 0) of ``val_size`` training rows (at most a tenth of
  them), carved out of ``train``. Rows without an image or a label are dropped; :attr:`dropped` counts them.

**Hateful Memes** (Kiela et al., 2020; ``hateful-memes``): hub ``biecho/hateful_memes`` (the complete release with
images: columns ``id``, ``image``, ``text`` (the meme's overlaid text), ``label`` (0 not hateful, 1 hateful); splits
``train`` 8,500, ``dev_seen`` 500, ``dev_unseen`` 540, ``test_seen`` 1,000, ``test_unseen`` 2,000; some unseen rows
have no image). Here ``val`` = ``dev_seen`` and ``test`` = ``test_seen`` (the paper's labelled splits). The
benchmark's own metric is AUROC; the suite reports accuracy and macro-F1 of the two classes.

**MM-IMDb** (Arevalo et al., 2017; ``mm-imdb``): 25,959 movies, poster + plot, 23 genres (multi-label), split
15,552 / 2,608 / 7,799 (``split.json``: ``train`` / ``dev`` / ``test``). There is no canonical copy on the hub, so
it loads from ``data_dir`` holding ``train-*.parquet``, ``dev-*.parquet`` and ``test-*.parquet`` with columns
``image`` (an HF ``Image``), ``plot`` (a string, or the release's list of plot summaries: the first is used) and
``genres`` (a list of strings); :func:`mmimdb_to_parquet` writes that layout from the original archive
(``split.json`` + ``dataset/<id>.json|.jpeg``), or pass ``hub_id`` of a copy with those columns.
**Single-label formulation**: each movie's label is its genre that is *rarest in the training split* (ties broken
alphabetically), so the label space is the genres seen in training and Drama/Comedy, which most movies carry, do
not swamp the classes; a movie is counted correct when that genre is predicted.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from datamodules.base import SPLITS, BenchDataModule, DataSpec, DataUnavailableError
from datamodules.registry import DATAMODULES

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# ------------------------------------------------------------------------------------------------------- text
def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters and digits, with inner apostrophes: "don't")."""
    return _WORD.findall(text.lower())


def build_vocab(texts: Iterable[str], max_size: int) -> dict[str, int]:
    """Word → id over ``texts``: ``<pad>`` = 0, ``<unk>`` = 1, then the most frequent words (ties alphabetical).

    Args:
        texts: The training texts.
        max_size: Size cap of the vocabulary, the two special tokens included (>= 2).
    """
    if max_size < 2:
        raise ValueError(f"vocab_size must be >= 2 (<pad> and <unk>), got {max_size}")
    counts = Counter(w for t in texts for w in words(t))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max_size - 2]
    return {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(ranked)}}


def encode_texts(texts: Sequence[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    """(N, length) long token ids, right-padded with :data:`PAD`, unknown words :data:`UNK`."""
    out = torch.full((len(texts), length), PAD, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [vocab.get(w, UNK) for w in words(text)][:length]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


# ----------------------------------------------------------------------------------------------------- images
def decode_image(image: Any, size: int, channels: int) -> torch.Tensor | None:
    """One PIL image (as ``datasets`` decodes it) → (C, size, size) float in [0, 1]; None stays None.

    Resizing uses PIL's bilinear filter, which is antialiased when shrinking; an image already at
    ``size``×``size`` is left untouched (pixels exact).
    """
    if image is None:
        return None
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]  # (S, S) -> (S, S, 1)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)  # (C, S, S)


# ------------------------------------------------------------------------------------------------- loading
def find_split_files(root: Path, names: Sequence[str]) -> tuple[str, list[str]]:
    """The first of ``names`` with ``<name>-*.parquet`` files anywhere under ``root``: (name, sorted files)."""
    for name in names:
        files = sorted(str(p) for p in root.rglob(f"{name}-*.parquet"))
        if files:
            return name, files
    return "", []


def load_hf_splits(hub_id: str | None, data_dir: str | None, split_names: dict[str, tuple[str, ...]],
                   what: str, how_to_get: str) -> dict[str, Any]:
    """Loads the dataset's splits as ``datasets.Dataset`` objects keyed by ``train`` / ``val`` / ``test``.

    Args:
        hub_id: Hub repository id, used when ``data_dir`` is None.
        data_dir: Local folder with the hub's (or the documented) parquet files.
        split_names: For each of ``train`` / ``val`` / ``test``, the dataset's split names to try, in order.
        what: The dataset's name, for messages.
        how_to_get: How to obtain the files, appended to messages.

    Returns:
        ``{"train": Dataset, "test": Dataset}`` plus ``"val"`` when the copy has a validation split.

    Raises:
        DataUnavailableError: If the folder lacks train or test files, or the hub cannot be reached.
    """
    import datasets

    if data_dir is not None:
        root = Path(data_dir)
        found = {split: find_split_files(root, names) for split, names in split_names.items()}
        missing = [s for s in ("train", "test") if not found[s][1]]
        if missing:
            wanted = "; ".join(f"{s}: {' or '.join(f'{n}-*.parquet' for n in split_names[s])}" for s in missing)
            raise DataUnavailableError(f"{what}: {root} has no parquet files for {', '.join(missing)} ({wanted}). "
                                       f"{how_to_get}")
        files = {s: f for s, (_, f) in found.items() if f}
        ds = datasets.load_dataset("parquet", data_files=files)
        return {s: ds[s] for s in files}
    if hub_id is None:
        raise DataUnavailableError(f"{what}: no data_dir given and no hub copy to fetch. {how_to_get}")
    try:
        ds = datasets.load_dataset(hub_id)
    except Exception as err:
        raise DataUnavailableError(
            f"{what}: the hub is not reachable ({type(err).__name__}: {err}). Download the dataset's parquet files "
            f"elsewhere (`huggingface-cli download --repo-type dataset {hub_id} --local-dir DIR`) and pass "
            f"data_dir=DIR. {how_to_get}"
        ) from err
    out = {}
    for split, names in split_names.items():
        name = next((n for n in names if n in ds), None)
        if name is not None:
            out[split] = ds[name]
        elif split != "val":
            raise DataUnavailableError(f"{what}: {hub_id} has no split among {list(names)} (it has {list(ds)})")
    return out


# --------------------------------------------------------------------------------------------------- base
class HFMultimodalDataModule(BenchDataModule):
    """Base of image+text classification benchmarks loaded through ``datasets`` (see the module docstring).

    Subclasses name the columns and splits and say how a raw label becomes a class index.

    Args:
        data_dir: Local folder with the parquet files; None uses ``$<env_var>``, else the hub (``hub_id``).
        hub_id: Hub repository to fetch when there is no local folder (default: the class's).
        image_size: Side images are resized to.
        channels: 1 (grayscale) or 3 (RGB).
        vocab_size: Vocabulary cap, ``<pad>`` and ``<unk>`` included.
        text_length: Tokens per text (longer texts are truncated); None: the class default.
        val_size: Training rows held out for validation when the copy has no validation split (at most a tenth).
        batch_size: Batch size of every dataloader.
        num_workers: DataLoader workers.
    """

    data_source = "hub: Hugging Face datasets (data_dir for a local copy)"

    default_hub_id: ClassVar[str | None]
    env_var: ClassVar[str]
    image_column: ClassVar[str] = "image"
    text_column: ClassVar[str] = "text"
    label_column: ClassVar[str] = "label"
    split_names: ClassVar[dict[str, tuple[str, ...]]]
    default_text_length: ClassVar[int] = 32
    how_to_get: ClassVar[str] = ""

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str | None = None,
        image_size: int = 64,
        channels: int = 3,
        vocab_size: int = 10_000,
        text_length: int | None = None,
        val_size: int = 500,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (<pad> and <unk>), got {vocab_size}")
        self.save_hyperparameters()
        self.data_dir = data_dir or os.environ.get(self.env_var)
        self.hub_id = hub_id or self.default_hub_id
        self.image_size, self.channels = image_size, channels
        self.max_vocab, self.val_size = vocab_size, val_size
        self.text_length = text_length or self.default_text_length
        self._vocab: dict[str, int] = {}
        self._class_names: tuple[str, ...] = ()
        self._captions: dict[str, list[str]] = {}
        self._dropped: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------- subclass API
    def text_of(self, value: Any) -> str:
        """The text of one row's text cell."""
        return "" if value is None else str(value)

    def classes_from(self, train_labels: list[Any]) -> tuple[str, ...]:
        """Class names, from the raw training labels."""
        raise NotImplementedError

    def label_of(self, value: Any) -> int | None:
        """Class index of one raw label (None: the row has no usable label and is dropped)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------- loading
    def _rows(self, dataset: Any) -> tuple[torch.Tensor, list[str], list[Any], int]:
        """Decodes a split: (images (N, C, S, S), texts, raw labels, number of rows dropped for a missing image)."""
        images, texts, labels, dropped = [], [], [], 0
        for row in dataset:
            image = decode_image(row[self.image_column], self.image_size, self.channels)
            if image is None or row[self.label_column] is None:
                dropped += 1
                continue
            images.append(image)
            texts.append(self.text_of(row[self.text_column]))
            labels.append(row[self.label_column])
        stacked = torch.stack(images) if images else torch.zeros(0, self.channels, self.image_size, self.image_size)
        return stacked, texts, labels, dropped

    def load_splits(self) -> dict[str, dict[str, torch.Tensor]]:
        raw = load_hf_splits(self.hub_id, self.data_dir, self.split_names, type(self).__name__, self.how_to_get)
        for split, ds in raw.items():
            missing = {self.image_column, self.text_column, self.label_column} - set(ds.column_names)
            if missing:
                raise DataUnavailableError(f"{type(self).__name__}: split {split!r} has no columns {sorted(missing)} "
                                           f"(it has {ds.column_names})")
        decoded = {split: self._rows(ds) for split, ds in raw.items()}
        dropped = {split: d[3] for split, d in decoded.items()}
        parts = {split: list(d[:3]) for split, d in decoded.items()}
        if "val" not in parts:
            parts["train"], parts["val"] = self._carve_val(*parts["train"])
            dropped["val"] = 0
        self._class_names = self.classes_from(parts["train"][2])
        out: dict[str, dict[str, torch.Tensor]] = {}
        for split in SPLITS:
            images, texts, raw_labels = parts[split]
            labels = [self.label_of(y) for y in raw_labels]
            keep = [i for i, y in enumerate(labels) if y is not None]
            dropped[split] += len(labels) - len(keep)
            parts[split] = [images[keep], [texts[i] for i in keep], [labels[i] for i in keep]]
        self._vocab = build_vocab(parts["train"][1], self.max_vocab)
        self._dropped = dropped
        for split in SPLITS:
            images, texts, labels = parts[split]
            self._captions[split] = texts
            out[split] = {
                "image": images,  # (N, C, S, S)
                "text": encode_texts(texts, self._vocab, self.text_length),  # (N, L)
                "label": torch.tensor(labels, dtype=torch.long),  # (N,)
            }
        return out

    def _carve_val(self, images: torch.Tensor, texts: list[str], labels: list[Any]) -> tuple[list, list]:
        """Splits training rows into (train, val): val is a fixed random subset (seed 0), order kept."""
        n_val = min(self.val_size, len(texts) // 10)
        perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
        val_idx = torch.sort(perm[:n_val]).values
        train_idx = torch.sort(perm[n_val:]).values

        def take(idx: torch.Tensor) -> list:
            return [images[idx], [texts[i] for i in idx.tolist()], [labels[i] for i in idx.tolist()]]

        return take(train_idx), take(val_idx)

    # -------------------------------------------------------------------------------------------- public API
    def caption_strings(self, split: str) -> list[str]:
        """The raw texts of one split, in the order of its tensors."""
        self.split_tensors(split)  # validates the split name and loads the data
        return list(self._captions[split])

    @property
    def vocab(self) -> dict[str, int]:
        """Word → token id, built from the training texts (loads the data)."""
        self.setup()
        return self._vocab

    @property
    def class_names(self) -> tuple[str, ...]:
        """Name of each class index (loads the data)."""
        self.setup()
        return self._class_names

    @property
    def dropped(self) -> dict[str, int]:
        """Rows dropped per split for a missing image or label (loads the data)."""
        self.setup()
        return dict(self._dropped)

    def data_spec(self) -> DataSpec:
        self.setup()  # id_to_word from the vocabulary: text encoders that read strings (minilm) need it
        return DataSpec.captioned(
            (self.channels, self.image_size, self.image_size), len(self.class_names), self.vocab, self.text_length
        )


# -------------------------------------------------------------------------------------------- hateful memes
@DATAMODULES.register("hateful-memes")
class HatefulMemesDataModule(HFMultimodalDataModule):
    """Hateful Memes: meme image + its overlaid text, hateful or not (2 classes); ``$HATEFUL_MEMES_DIR``."""

    default_hub_id = "biecho/hateful_memes"
    env_var = "HATEFUL_MEMES_DIR"
    split_names = {"train": ("train",), "val": ("dev_seen", "validation", "dev"), "test": ("test_seen", "test")}
    default_text_length = 32
    how_to_get = ("Get the hub copy (`huggingface-cli download --repo-type dataset biecho/hateful_memes --local-dir "
                  "DIR`, which holds train-/dev_seen-/test_seen-*.parquet with columns image, text, label) and pass "
                  "data_dir=DIR or set $HATEFUL_MEMES_DIR.")
    CLASS_NAMES: ClassVar[tuple[str, str]] = ("not-hateful", "hateful")

    def classes_from(self, train_labels: list[Any]) -> tuple[str, ...]:
        return self.CLASS_NAMES

    def label_of(self, value: Any) -> int | None:
        label = int(value)
        return label if label in (0, 1) else None  # the unlabelled test copies use -1


# ------------------------------------------------------------------------------------------------- MM-IMDb
@DATAMODULES.register("mm-imdb")
class MMIMDbDataModule(HFMultimodalDataModule):
    """MM-IMDb: movie poster + plot; label = the movie's genre rarest in training (see the module docstring);
    ``$MMIMDB_DIR``."""

    default_hub_id = None
    env_var = "MMIMDB_DIR"
    text_column = "plot"
    label_column = "genres"
    split_names = {"train": ("train",), "val": ("dev", "validation"), "test": ("test",)}
    default_text_length = 128
    how_to_get = ("Download the MM-IMDb archive (mmimdb.tar.gz, http://lisi1.unal.edu.co/mmimdb/), unpack it, "
                  "convert it with `datamodules.hf_multimodal.mmimdb_to_parquet(RAW, DIR)` (writes train-/dev-/"
                  "test-*.parquet with columns image, plot, genres) and pass data_dir=DIR or set $MMIMDB_DIR.")

    def text_of(self, value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return str(value[0]) if value else ""
        return super().text_of(value)

    def classes_from(self, train_labels: list[Any]) -> tuple[str, ...]:
        self.genre_counts = Counter(g for genres in train_labels for g in set(genres))
        return tuple(sorted(self.genre_counts))

    def label_of(self, value: Any) -> int | None:
        known = [g for g in set(value or ()) if g in self.genre_counts]
        if not known:
            return None
        rarest = min(known, key=lambda g: (self.genre_counts[g], g))
        return self._class_names.index(rarest)


def mmimdb_to_parquet(raw_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Converts the original MM-IMDb release into the parquet layout :class:`MMIMDbDataModule` reads.

    Args:
        raw_dir: The unpacked archive: ``split.json`` (``{"train": [ids], "dev": [ids], "test": [ids]}``) and
            ``dataset/<id>.json`` (with ``plot``, a list of strings, and ``genres``) + ``dataset/<id>.jpeg``.
        out_dir: Where ``train-00000-of-00001.parquet``, ``dev-...`` and ``test-...`` are written.

    Returns:
        Rows written per split.
    """
    import datasets

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    splits = json.loads((raw_dir / "split.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "dev", "test"):
        rows: dict[str, list] = {"id": [], "image": [], "plot": [], "genres": []}
        for movie_id in splits[split]:
            meta = json.loads((raw_dir / "dataset" / f"{movie_id}.json").read_text())
            plot = meta.get("plot") or [""]
            rows["id"].append(str(movie_id))
            # the image bytes themselves (not a path), so that the parquet files are self-contained
            rows["image"].append({"bytes": (raw_dir / "dataset" / f"{movie_id}.jpeg").read_bytes(), "path": None})
            rows["plot"].append(plot[0] if isinstance(plot, list) else str(plot))
            rows["genres"].append(list(meta.get("genres", [])))
        ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
        ds.to_parquet(str(out_dir / f"{split}-00000-of-00001.parquet"))
        written[split] = len(ds)
    return written

