"""Training, validation and publication of the in-domain evaluators (``python -m bench.evaluators``).

Three evaluators, each one weights file ``bench/evaluators/weights/<name>.pt``:

* ``clip-indomain-fashion`` — :class:`~bench.evaluators.networks.ContrastiveImageText` trained on the train split
  of ``captioned-fashion-mnist`` (55,000 real images with their captions), validated on its test split (10,000);
* ``classifier-indomain-fashion`` — :class:`~bench.evaluators.networks.ConvClassifier` on ``fashion-mnist``
  (same splits), 28×28, 10 classes;
* ``classifier-indomain-digits`` — the same CNN on the half-occluded 8×8 images of ``captioned-digits``
  (train split, 1,259 images), validated on its test split (359).

Training is a plain loop (no Lightning: nothing here is a benchmarked model), deterministic: seeded torch RNG
for initialization and shuffling, ``torch.use_deterministic_algorithms(True)``, no data-loader workers. Images are
quantized to uint8 levels before training (``round(255 x) / 255``), which is exactly what the backbone sees at
evaluation time. The weights file holds only plain tensors and builtins (``torch.load(..., weights_only=True)``)
and nothing that changes from run to run (no timestamps or wall times), so the same command on the same machine
and software gives the same bytes and sha256; wall times go into ``leaderboards/evaluators.csv``.

Retrieval figures of the CLIP evaluator (the captions repeat: 10 classes × 3 sizes × 3 tones, each in up to four
phrasings; a caption's *meaning* is its (class, size, tone) triple, which :func:`fashion_attributes` reads off
the words):

* **image→text top-1**: for every test image, the most similar caption among the distinct caption strings of
  the test split; correct when that caption states the image's class, size and tone (any phrasing: the phrasing
  template is drawn at random and is not visible in the image). Per-attribute variants check one of the three.
  Also reported: the strict variant (the retrieved string equals the image's own caption), whose ceiling is about
  one over the number of phrasings of that meaning.
* **text→image precision@10**: for every distinct test caption string, the 10 most similar test images; the
  fraction of them whose own caption has the same (class, size, tone), averaged over the captions. Per-attribute
  variants again.
* chance levels: the same figures for a uniformly random ranking, computed exactly from the test split.
"""

from __future__ import annotations

import csv
import io
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.atomic import atomic_write, atomic_write_text
from bench.evaluators.networks import (
    ClassifierConfig,
    ContrastiveConfig,
    ContrastiveImageText,
    ConvClassifier,
    ConvConfig,
    TextConfig,
    WordTokenizer,
    contrastive_loss,
)
from bench.hashing import file_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LEADERBOARD_CSV = REPO_ROOT / "leaderboards" / "evaluators.csv"
LEADERBOARD_MD = REPO_ROOT / "leaderboards" / "evaluators.md"
#: Format version of the weights file (bump when its keys change).
FILE_FORMAT = 1
EVAL_BATCH = 1000


@dataclass(frozen=True)
class EvaluatorSpec:
    """How one evaluator is trained.

    Attributes:
        name: Registered backbone name (and weights file stem).
        kind: ``"clip"`` or ``"classifier"``.
        dataset: Registered datamodule it is trained on (default arguments).
        image_size: Side of the images (native).
        widths: CNN layer widths.
        stem_stride: Stride of the first CNN layer.
        epochs: Default number of epochs.
        batch_size: Training batch size.
        lr: Peak AdamW learning rate (linear warm-up over ``warmup_steps``, then cosine decay to 0).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps.
        text: Text tower width, layers and heads (CLIP only).
        embed_dim: Shared embedding dimension (CLIP only).
    """

    name: str
    kind: str
    dataset: str
    image_size: int
    widths: tuple[int, ...]
    epochs: int
    batch_size: int
    stem_stride: int = 1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    text: dict[str, int] = field(default_factory=lambda: {"width": 64, "layers": 1, "heads": 2})
    embed_dim: int = 64


SPECS: dict[str, EvaluatorSpec] = {
    s.name: s
    for s in (
        EvaluatorSpec("clip-indomain-fashion", "clip", "captioned-fashion-mnist", 28, (32, 64, 128), 3, 256, 2),
        EvaluatorSpec("classifier-indomain-fashion", "classifier", "fashion-mnist", 28, (32, 64, 128), 3, 128, 2),
        EvaluatorSpec(
            "classifier-indomain-digits", "classifier", "captioned-digits", 8, (32, 64), 40, 64, weight_decay=5e-4,
            warmup_steps=50,
        ),
    )
}


def canonical_command(name: str, epochs: int, seed: int) -> str:
    """The command that reproduces a weights file (the output path does not change its contents)."""
    return f"python -m bench.evaluators train {name} --epochs {epochs} --seed {seed}"


# ---------------------------------------------------------------------------------------------------------- data
@dataclass
class Split:
    """One split in memory: uint8-quantized images (N, 1, S, S) float in [0, 1], labels (N,), captions or None."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str] | None = None

    def head(self, n: int | None) -> Split:
        """The first ``n`` items (all when None)."""
        if n is None:
            return self
        caps = self.captions[:n] if self.captions is not None else None
        return Split(self.images[:n], self.labels[:n], caps)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """``round(255 x) / 255``: the values a uint8 image has once the backbone divides it by 255."""
    return images.clamp(0, 1).mul(255).round().div(255)


def load_splits(dataset: str) -> dict[str, Split]:
    """The train and test splits of a registered datamodule (default arguments), images quantized.

    Raises:
        DataUnavailableError: The dataset's files are missing (message says how to get them).
    """
    from datamodules import DATAMODULES

    dm = DATAMODULES.get(dataset)()
    dm.setup()
    out = {}
    for split in ("train", "test"):
        t = dm.split_tensors(split)
        captions = dm.captions[split] if isinstance(getattr(dm, "captions", None), dict) else None
        out[split] = Split(quantize(t["image"]), t["label"], captions)
    return out


def fashion_attributes(captions: Sequence[str]) -> torch.Tensor:
    """(N, 3) long: the (class, size, tone) indices each ``captioned-fashion-mnist`` caption states.

    Raises:
        ValueError: A caption does not state exactly one class, one size and one tone.
    """
    from datamodules.captioned_fashion import CLASS_NAMES, SIZES, TONES

    out = torch.empty(len(captions), 3, dtype=torch.long)
    for i, caption in enumerate(captions):
        words = caption.lower().split()
        joined = f" {' '.join(words)} "
        classes = [k for k, n in enumerate(CLASS_NAMES) if f" {n} " in joined]
        sizes = [k for k, s in enumerate(SIZES) if s in words]
        tones = [k for k, t in enumerate(TONES) if t in words]
        if len(classes) != 1 or len(sizes) != 1 or len(tones) != 1:
            raise ValueError(f"caption {caption!r} does not state one class, one size and one tone")
        out[i] = torch.tensor([classes[0], sizes[0], tones[0]])
    return out


def attribute_groups(attributes: torch.Tensor) -> torch.Tensor:
    """(N,) group id of (class, size, tone) triples: ``class * 9 + size * 3 + tone``."""
    return attributes[:, 0] * 9 + attributes[:, 1] * 3 + attributes[:, 2]


# ------------------------------------------------------------------------------------------------------ training
def set_determinism(seed: int) -> None:
    """Seeds torch, makes every op deterministic (raises on an op that has no deterministic version) and runs
    on one CPU thread.

    One thread makes the result independent of the core count (the order of float reductions is fixed), and is
    also faster for networks this small: with two threads on two busy cores one step took 10-20× longer (threads
    waiting for each other), measured here.
    """
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def _schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def fit(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n_train: int,
    spec: EvaluatorSpec,
    epochs: int,
    seed: int,
    max_steps: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """AdamW over shuffled mini-batches of indices.

    Args:
        model: The network (trained in place).
        loss_fn: Index batch (B,) → scalar loss.
        n_train: Number of training items.
        spec: Batch size, learning rate, weight decay, warm-up.
        epochs: Passes over the data.
        seed: Seed of the shuffling generator.
        max_steps: Stop after this many optimizer steps (None: all epochs); 0 leaves the weights as initialized.
        log: Where per-epoch losses are written.

    Returns:
        ``{"steps", "final_loss"}``.
    """
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr
    )
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    gen = torch.Generator().manual_seed(seed + 1)
    step, last = 0, float("nan")
    model.train()
    for epoch in range(epochs):
        if step >= total:
            break
        order = torch.randperm(n_train, generator=gen)
        running, count = 0.0, 0
        for idx in order.split(spec.batch_size):
            if step >= total:
                break
            for group in opt.param_groups:
                group["lr"] = spec.lr * _schedule(step, total, min(spec.warmup_steps, max(1, total // 10)))
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            last = float(loss.detach())
            running, count = running + last * len(idx), count + len(idx)
        log(f"epoch {epoch + 1}/{epochs}: train loss {running / max(count, 1):.4f} ({step} steps)")
    model.eval()
    return {"steps": step, "final_loss": last}


def build_clip(spec: EvaluatorSpec, vocab: list[str], text_length: int) -> ContrastiveImageText:
    """The CLIP evaluator network of ``spec`` for a vocabulary (random init from the current torch seed)."""
    config = ContrastiveConfig(
        image=ConvConfig(in_channels=1, widths=spec.widths, image_size=spec.image_size, stem_stride=spec.stem_stride),
        text=TextConfig(vocab_size=len(vocab), length=text_length, **spec.text),
        embed_dim=spec.embed_dim,
    )
    return ContrastiveImageText(config)


def build_classifier(spec: EvaluatorSpec, num_classes: int = 10) -> ConvClassifier:
    """The classifier network of ``spec`` (random init from the current torch seed)."""
    return ConvClassifier(ClassifierConfig(ConvConfig(1, spec.widths, spec.image_size, spec.stem_stride), num_classes))


# ---------------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def embed_images(model: ContrastiveImageText, images: torch.Tensor) -> torch.Tensor:  # (N, 1, S, S) -> (N, E)
    return torch.cat([model.encode_image(x) for x in images.split(EVAL_BATCH)])


@torch.no_grad()
def clip_validation(
    model: ContrastiveImageText, tokenizer: WordTokenizer, images: torch.Tensor, captions: list[str]
) -> dict[str, float]:
    """Retrieval figures of the CLIP evaluator on one split (definitions in the module docstring).

    Args:
        model: The network (eval mode). tokenizer: Its tokenizer.
        images: (N, 1, S, S) in [0, 1]. captions: The N captions of those images.

    Returns:
        Name → value, chance levels under ``chance_<name>``, plus mean cosines and the real-pair CLIP score.
    """
    model.eval()
    distinct = sorted(set(captions))
    img = embed_images(model, images)  # (N, E)
    txt = model.encode_text(tokenizer.encode(distinct))  # (M, E)
    sim = img @ txt.T  # (N, M)
    a_img, a_cap = fashion_attributes(captions), fashion_attributes(distinct)  # (N, 3), (M, 3)
    match = a_img[:, None, :] == a_cap[None, :, :]  # (N, M, 3) per-attribute agreement
    full = match.all(-1)  # (N, M)
    out: dict[str, float] = {"n_images": float(len(images)), "n_captions": float(len(distinct))}

    best = sim.argmax(1)  # (N,)
    rows = torch.arange(len(images))
    out["i2t_top1"] = full[rows, best].float().mean().item()
    out["chance_i2t_top1"] = full.float().mean().item()
    for k, attr in enumerate(("class", "size", "tone")):
        out[f"i2t_top1_{attr}"] = match[rows, best, k].float().mean().item()
        out[f"chance_i2t_top1_{attr}"] = match[..., k].float().mean().item()
    index = {c: j for j, c in enumerate(distinct)}
    own = torch.tensor([index[c] for c in captions])
    out["i2t_top1_exact_string"] = (best == own).float().mean().item()
    out["chance_i2t_top1_exact_string"] = 1.0 / len(distinct)

    k = min(10, len(images))
    top = sim.topk(k, dim=0).indices  # (k, M) image indices per caption
    cols = torch.arange(len(distinct))
    out["t2i_p@10"] = full[top, cols].float().mean().item()
    out["chance_t2i_p@10"] = full.float().mean(0).mean().item()
    for a, attr in enumerate(("class", "size", "tone")):
        out[f"t2i_p@10_{attr}"] = match[top, cols, a].float().mean().item()
        out[f"chance_t2i_p@10_{attr}"] = match[..., a].float().mean(0).mean().item()

    cos_own = sim[rows, own]  # (N,) each image with its own caption
    other = full.logical_not()  # captions of another meaning
    out["cos_matched"] = cos_own.mean().item()
    out["cos_mismatched"] = ((sim * other).sum(1) / other.sum(1).clamp(min=1)).mean().item()
    out["clip_score_real"] = (100.0 * cos_own.clamp(min=0)).mean().item()
    return out


@torch.no_grad()
def classifier_validation(model: ConvClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy (and its chance level: the most frequent class's share) of ``model`` on (N, 1, S, S) images."""
    model.eval()
    pred = torch.cat([model(x).argmax(1) for x in images.split(EVAL_BATCH)])
    counts = torch.bincount(labels, minlength=model.config.num_classes)
    return {
        "n_images": float(len(images)),
        "accuracy": (pred == labels).float().mean().item(),
        "chance_accuracy": (counts.max() / counts.sum()).item(),
    }


# ------------------------------------------------------------------------------------------------ train one file
def train_evaluator(
    name: str,
    out: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    *,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    max_steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    splits: dict[str, Split] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trains, validates and saves one evaluator.

    Args:
        name: One of :data:`SPECS`.
        out: Weights file (default ``bench/evaluators/weights/<name>.pt``).
        epochs: Epochs (default the spec's).
        seed: Seed of initialization and shuffling.
        train_limit / eval_limit: Use only the first this-many train / test items (tests; recorded).
        max_steps: Stop after this many optimizer steps (tests; recorded).
        overrides: Replaced :class:`EvaluatorSpec` fields (e.g. tiny ``widths`` in tests; recorded).
        splits: Pre-loaded :func:`load_splits` output (tests), else loaded here.
        log: Progress output.

    Returns:
        The saved payload plus ``"path"``, ``"sha256"`` and ``"wall_s"`` (those three are not in the file).

    Raises:
        KeyError: Unknown name.
    """
    if name not in SPECS:
        raise KeyError(f"unknown evaluator {name!r}; known: {', '.join(SPECS)}")
    spec = replace(SPECS[name], **(overrides or {}))
    epochs = spec.epochs if epochs is None else epochs
    path = Path(out) if out is not None else WEIGHTS_DIR / f"{name}.pt"
    threads = torch.get_num_threads()
    try:
        return _train(name, spec, path, epochs, seed, train_limit, eval_limit, max_steps, overrides, splits, log)
    finally:
        torch.set_num_threads(threads)


def _train(
    name: str,
    spec: EvaluatorSpec,
    path: Path,
    epochs: int,
    seed: int,
    train_limit: int | None,
    eval_limit: int | None,
    max_steps: int | None,
    overrides: dict[str, Any] | None,
    splits: dict[str, Split] | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """:func:`train_evaluator` after argument resolution (it restores the thread count afterwards)."""
    start = time.perf_counter()
    data = splits if splits is not None else load_splits(spec.dataset)
    train, test = data["train"].head(train_limit), data["test"].head(eval_limit)
    set_determinism(seed)
    log(f"{name}: {len(train.images)} train / {len(test.images)} test images of {spec.dataset}")

    payload: dict[str, Any] = {"format": FILE_FORMAT, "name": name, "image_size": spec.image_size}
    if spec.kind == "clip":
        assert train.captions is not None and test.captions is not None
        vocab = WordTokenizer.build(train.captions)
        length = max(len(c.split()) for c in train.captions)
        tokenizer = WordTokenizer(vocab, length)
        model: nn.Module = build_clip(spec, vocab, length)
        tokens = tokenizer.encode(train.captions)  # (N, L)
        groups = attribute_groups(fashion_attributes(train.captions))  # (N,)

        def loss_fn(idx: torch.Tensor) -> torch.Tensor:
            return contrastive_loss(model(train.images[idx], tokens[idx]), groups[idx])

        stats = fit(model, loss_fn, len(train.images), spec, epochs, seed, max_steps, log)
        validation = clip_validation(model, tokenizer, test.images, test.captions)
        payload.update(arch=model.config.to_dict(), vocab=vocab, text_length=length)
        payload["temperature"] = float(1.0 / model.logit_scale.detach().clamp(max=math.log(100)).exp())
    else:
        model = build_classifier(spec)

        def loss_fn(idx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(train.images[idx]), train.labels[idx])

        stats = fit(model, loss_fn, len(train.images), spec, epochs, seed, max_steps, log)
        validation = classifier_validation(model, test.images, test.labels)
        payload["arch"] = model.config.to_dict()

    payload["state_dict"] = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    payload["trained_with"] = {
        "command": canonical_command(name, epochs, seed),
        "seed": seed,
        "epochs": epochs,
        "steps": stats["steps"],
        "final_train_loss": stats["final_loss"],
        "dataset": spec.dataset,
        "train_split": "train",
        "n_train": len(train.images),
        "validation_split": "test",
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "optimizer": "AdamW, linear warm-up then cosine decay",
        "torch_version": str(torch.__version__),  # TorchVersion is not a plain str: weights_only refuses it
        "threads": 1,
        "limits": {"train_limit": train_limit, "eval_limit": eval_limit, "max_steps": max_steps,
                   "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in (overrides or {}).items()}},
    }
    payload["validation"] = validation
    save_payload(payload, path)
    wall = time.perf_counter() - start
    file_sha256.cache_clear()
    sha = file_sha256(str(path.resolve()))
    log(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {wall:.1f} s")
    log(f"{name}: sha256 {sha}")
    for key, value in validation.items():
        if not key.startswith("chance_"):
            chance = validation.get(f"chance_{key}")
            log(f"  {key} = {value:.4f}" + (f"   (chance {chance:.4f})" if chance is not None else ""))
    return {**payload, "path": str(path), "sha256": sha, "wall_s": wall}


def save_payload(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` atomically; the file is byte-identical for identical payloads.

    Raises:
        pickle.UnpicklingError: The payload holds something ``torch.load(weights_only=True)`` would refuse.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # refuse to write a file that cannot be read safely
    atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="wb")


# ------------------------------------------------------------------------------------------------- leaderboard
CSV_COLUMNS = (
    "evaluator", "dataset", "split", "metric", "value", "chance", "n", "sha256", "command", "seed", "epochs",
    "steps", "wall_s", "torch_version", "machine",
)
_METRIC_TEXT = {
    "i2t_top1": "image→text top-1 (same class, size and tone)",
    "i2t_top1_class": "image→text top-1, class correct",
    "i2t_top1_size": "image→text top-1, size correct",
    "i2t_top1_tone": "image→text top-1, tone correct",
    "i2t_top1_exact_string": "image→text top-1, the image's own caption string",
    "t2i_p@10": "text→image precision@10 (same class, size and tone)",
    "t2i_p@10_class": "text→image precision@10, class",
    "t2i_p@10_size": "text→image precision@10, size",
    "t2i_p@10_tone": "text→image precision@10, tone",
    "cos_matched": "mean cosine, image with its own caption",
    "cos_mismatched": "mean cosine, image with captions of another meaning",
    "clip_score_real": "CLIP score of the real test pairs (100·max(cos, 0))",
    "accuracy": "test accuracy",
}


def leaderboard_rows(weights_dir: Path, wall_times: dict[str, float], machine: dict[str, str]) -> list[dict]:
    """Long-format rows (one per evaluator and metric) from the weights files in ``weights_dir``.

    Args:
        weights_dir: Folder of ``<name>.pt`` files.
        wall_times: sha256 → training wall time (s), from this run or the previous CSV.
        machine: sha256 → machine description it was trained on.
    """
    rows = []
    for name in SPECS:
        path = weights_dir / f"{name}.pt"
        if not path.is_file():
            continue
        payload = torch.load(path, map_location="cpu", weights_only=True)
        sha = file_sha256(str(path.resolve()))
        tw, val = payload["trained_with"], payload["validation"]
        for metric, text in _METRIC_TEXT.items():
            if metric not in val:
                continue
            chance = val.get(f"chance_{metric}")
            rows.append({
                "evaluator": name, "dataset": tw["dataset"], "split": tw["validation_split"], "metric": metric,
                "value": f"{val[metric]:.4f}", "chance": "" if chance is None else f"{chance:.4f}",
                "n": int(val["n_images"]), "sha256": sha, "command": tw["command"], "seed": tw["seed"],
                "epochs": tw["epochs"], "steps": tw["steps"],
                "wall_s": "" if sha not in wall_times else f"{wall_times[sha]:.0f}",
                "torch_version": tw["torch_version"], "machine": machine.get(sha, ""),
            })
    return rows


def _previous(csv_path: Path) -> tuple[dict[str, float], dict[str, str]]:
    """sha256 → wall time and machine from an existing leaderboard CSV (wall times are not in the weights)."""
    walls: dict[str, float] = {}
    machines: dict[str, str] = {}
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("wall_s"):
                    walls[row["sha256"]] = float(row["wall_s"])
                if row.get("machine"):
                    machines[row["sha256"]] = row["machine"]
    return walls, machines


def machine_description() -> str:
    """CPU model / core count the training ran on (for wall times)."""
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (training uses 1 thread)"


def write_leaderboard(
    weights_dir: Path = WEIGHTS_DIR,
    csv_path: Path = LEADERBOARD_CSV,
    md_path: Path = LEADERBOARD_MD,
    new_wall_times: dict[str, float] | None = None,
) -> list[dict]:
    """Writes the evaluators' published validation quality (CSV, long format, and Markdown).

    Values come from the weights files themselves (their stored ``validation``); wall times of files trained in
    this process from ``new_wall_times`` (sha256 → s), older ones are kept from the previous CSV.
    """
    walls, machines = _previous(csv_path)
    for sha, wall in (new_wall_times or {}).items():
        walls[sha], machines[sha] = wall, machine_description()
    rows = leaderboard_rows(weights_dir, walls, machines)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(md_path, render_markdown(rows))
    return rows


def render_markdown(rows: list[dict]) -> str:
    """The Markdown page: protocol, definitions, one table per evaluator, provenance."""
    lines = [
        "# In-domain evaluators: published validation quality",
        "",
        "Small networks trained by this project's own command, shipped as `bench/evaluators/weights/<name>.pt` "
        "(sha256 pinned in `bench/backbones/indomain.py`) and registered as backbones under names that cannot be "
        "mistaken for OpenAI's CLIP. They measure text–image agreement (CLIP score) and class coherence **offline, "
        "in the domain of this project's data only**; their scores are not comparable with OpenAI-CLIP scores or "
        "ImageNet-Inception FID/IS. Regenerate this page with `python -m bench.evaluators report`; retrain a file with "
        "its command below (deterministic: same bytes on the same machine and software).",
        "",
        "Retrieval on the `captioned-fashion-mnist` test split (10,000 images; 10 classes × 3 sizes × 3 tones, each "
        "caption in one of 4 randomly drawn phrasings). A caption's *meaning* is its (class, size, tone) triple.",
        "",
        "* **image→text top-1**: for each test image, the most similar of the distinct test caption strings; correct "
        "when it states the image's class, size and tone (any phrasing — the phrasing is random and not in the image). "
        "Per-attribute rows check one attribute. `exact_string` requires the image's own caption string (its ceiling "
        "is about 1/4, the phrasings of a meaning being indistinguishable from the image).",
        "* **text→image precision@10**: for each distinct test caption string, the share of its 10 most similar test "
        "images whose own caption has the same class, size and tone (per-attribute rows: that attribute), averaged "
        "over the captions.",
        "* **chance**: the same figure for a uniformly random ranking, computed exactly on the split.",
        "* Classifiers: top-1 accuracy on the test split; chance = share of the most frequent class.",
        "",
    ]
    for name in dict.fromkeys(r["evaluator"] for r in rows):
        mine = [r for r in rows if r["evaluator"] == name]
        first = mine[0]
        lines += [
            f"## `{name}`",
            "",
            f"Trained on the train split of `{first['dataset']}`, validated on its `{first['split']}` split "
            f"({first['n']} images).",
            "",
            "| metric | value | chance |",
            "|---|---:|---:|",
        ]
        lines += [f"| {_METRIC_TEXT[r['metric']]} | {r['value']} | {r['chance'] or '—'} |" for r in mine]
        lines += [
            "",
            f"* command: `{first['command']}` (seed {first['seed']}, {first['epochs']} epochs, {first['steps']} steps)",
            f"* sha256: `{first['sha256']}`",
            f"* wall time: {first['wall_s'] or '?'} s ({first['machine'] or 'machine not recorded'}); "
            f"torch {first['torch_version']}",
            "",
        ]
    return "\n".join(lines)
