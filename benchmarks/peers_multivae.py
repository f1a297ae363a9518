"""``mvae-late`` against MultiVae's MVAE (Agier et al.): the same networks, each trained by its own pipeline.

Per seed s: one freshly initialised ``mvae-late`` (:class:`~models.fusion.multimodal_vae.LateFusionMVAE`, built for
``captioned-digits`` from the registries with the fusion suite's generation-track defaults: text weight λ = 10,
Adam lr 1e-3, latent 16) is deep-copied twice.

* Ours trains with a Lightning ``Trainer`` (deterministic, no logger / checkpoints / validation) on the datamodule's
  shuffled train loader, as ``bench run --suite fusion`` fits it (the runner's validation passes only read the
  model, so they are left out).
* MultiVae's :class:`multivae.models.MVAE` is built on the other copy's modules by
  :func:`tests.models.test_mvae_late_multivae.reference` (its encoders call our experts, its decoders are ours;
  Bernoulli image / categorical text likelihoods, ``warmup=0``, likelihood rescaling (1, λ), sub-sampled ELBO with
  ``k=0``), and trains with MultiVae's ``BaseTrainer`` (Adam at our lr, our batch size and epochs, no eval set, so
  it keeps the model of the best epoch train loss, which it saves as its final model; the table says at which epoch).
  Torch's Bernoulli refuses gray-level pixels under argument validation; with validation off its ``log_prob`` is
  ``-BCE_with_logits``, our [0, 1] surrogate, so the two objectives are the same function (the test file proves it
  at fixed weights).

Both trained networks are then scored as ``LateFusionMVAE`` objects by one scorer on the captioned-digits test
split: the joint negative ELBO ``-ELBO(x, w)`` (text weight 1, like ``val_loss``; posterior noise averaged over
``--draws`` seeded draws) and its parts, ``-ELBO(x)`` of the image alone, and caption→image coherence: one image
per test caption by ``sample_from_text`` (CPU generator seeded with s, as the runner's
:func:`bench.providers.generate_from_captions`), classified by ``classifier-indomain-digits``, top-1 vs the digit.

MultiVae's seed is s + ``--multivae-seed-offset`` (100 by default): the two runs are independent draws. Equal seeds
do not pair them: after 2 steps from one init with seed 0 on both sides the weights differ by up to 0.0039, beyond
float32 rounding under Adam's ~1e-3 steps, so the shuffle / noise streams do not line up. The per-seed rows print
the largest parameter difference after training.

Command: ``.venv/bin/python benchmarks/peers_multivae.py [--seeds 0 1 2] [--epochs 40] [--multivae-seed-offset 100]``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # MultiVae's progress bar
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from bench.backbones import BACKBONES  # noqa: E402
from bench.metrics.cross_modal import Coherence  # noqa: E402
from bench.providers import generate_from_captions  # noqa: E402
from datamodules import DATAMODULES  # noqa: E402
from models import MODELS  # noqa: E402

METRICS = ("nelbo", "rec_image", "rec_text", "kl", "nelbo_image", "coherence")
LABELS = {
    "nelbo": "-ELBO(x, w) joint (nats)", "rec_image": "  rec image (nats)", "rec_text": "  rec text (nats)",
    "kl": "  KL(q(z|x,w) || p) (nats)", "nelbo_image": "-ELBO(x) image only (nats)",
    "coherence": "coherence caption->image",
}


def quiet() -> None:
    """Silences Lightning's and MultiVae / pythae's INFO chatter."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("multivae", "pythae", "lightning", "pytorch_lightning")):
            logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")


def build(seed: int, batch_size: int = 64):
    """The ``captioned-digits`` datamodule and a freshly initialised ``mvae-late`` (defaults) under ``seed``."""
    dm = DATAMODULES.get("captioned-digits")(batch_size=batch_size)
    pl.seed_everything(seed, verbose=False)
    return dm, MODELS.get("mvae-late").from_data(dm.data_spec())


def train_ours(model, dm, epochs: int, seed: int, tmp: str, limit_batches: int | float = 1.0) -> float:
    """Lightning fit of ``model`` on ``dm``'s train loader; returns wall seconds."""
    pl.seed_everything(seed, verbose=False)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, limit_train_batches=limit_batches, default_root_dir=tmp,
    )
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return time.perf_counter() - start


def multivae_dataset(tensors: dict[str, torch.Tensor]):
    """The train split as a MultiVae dataset: image (N, 1, H, W) and text ``{"tokens": (N, L)}`` per sample."""
    from multivae.data.datasets.base import DatasetOutput, MultimodalBaseDataset

    class _Captioned(MultimodalBaseDataset):
        def __getitem__(self, index):
            return DatasetOutput(data={"image": self.data["image"][index],
                                       "text": {"tokens": self.data["text"][index]}})

    return _Captioned(data={"image": tensors["image"], "text": tensors["text"]})


def train_multivae(model, tensors: dict[str, torch.Tensor], epochs: int, batch_size: int, seed: int,
                   tmp: str) -> tuple[torch.nn.Module, float, int]:
    """MultiVae ``BaseTrainer`` fit of its MVAE on a deep copy of ``model``'s modules.

    Returns:
        The kept (best-train-loss) weights in a ``LateFusionMVAE``, wall seconds, and the epoch they come from.
    """
    from multivae.trainers import BaseTrainer, BaseTrainerConfig

    from tests.models.test_mvae_late_multivae import reference

    ours = copy.deepcopy(model)
    ref = reference(ours, text_weight=float(ours.text_weight)).train()  # shares ``ours``'s parameters
    cfg = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=batch_size, num_epochs=epochs,
                            learning_rate=float(ours.lr), optimizer_cls="Adam", seed=seed, no_cuda=True)
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)  # gray-level pixels: -BCE_with_logits
    epoch_losses: list[float] = []
    try:
        trainer = BaseTrainer(ref, train_dataset=multivae_dataset(tensors), training_config=cfg)
        quiet()
        step = trainer.train_step

        def logged_step(epoch: int):
            loss, metrics = step(epoch)
            epoch_losses.append(loss)
            return loss, metrics

        trainer.train_step = logged_step
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    kept = trainer._best_model.encoders["image"].model  # the LateFusionMVAE holding the kept weights
    best_epoch = 1 + min(range(len(epoch_losses)), key=epoch_losses.__getitem__)
    return kept.eval(), seconds, best_epoch


@torch.no_grad()
def score(model, dm, clf, seed: int, draws: int) -> dict[str, float]:
    """Test-split figures of a trained ``LateFusionMVAE`` (same code for both libraries' weights)."""
    model.eval()
    test = dm.split_tensors("test")
    batch = {"image": test["image"], "text": test["text"]}
    sums = {k: 0.0 for k in ("rec_image", "rec_text", "kl", "nelbo_image")}
    torch.manual_seed(10_000 + seed)
    for _ in range(draws):
        t = model.joint_terms(batch)  # (N,) each
        for k in ("rec_image", "rec_text", "kl"):
            sums[k] += float(t[k].mean())
        sums["nelbo_image"] += -float(model.elbo(batch["image"]).mean())
    out = {k: v / draws for k, v in sums.items()}
    out["nelbo"] = out["rec_image"] + out["rec_text"] + out["kl"]
    images = generate_from_captions(model, test["text"], batch_size=64, seed=seed)  # (N, 1, 8, 8) uint8
    coherence = Coherence(num_classes=10)
    coherence.update(clf.classify(images), test["label"])
    out["coherence"] = float(coherence.compute())
    return out


@torch.no_grad()
def max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest absolute difference between two models' matching parameters."""
    pb = dict(b.named_parameters())
    return max(float((p - pb[n]).abs().max()) for n, p in a.named_parameters())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def table(rows: dict[str, list[dict[str, float]]], times: dict[str, list[float]]) -> str:
    """Markdown table: metric, ours and MultiVae mean ± std, Δ, the seed-noise tolerance and whether Δ is within."""
    n = len(rows["ours"])
    lines = ["| metric | ours (mean ± std) | MultiVae (mean ± std) | Δ (ours − MultiVae) | tolerance "
             "2·sqrt((s1²+s2²)/n) | within? |", "|---|---|---|---|---|---|"]
    for key in METRICS:
        (m1, s1), (m2, s2) = (mean_std([r[key] for r in rows[lib]]) for lib in ("ours", "multivae"))
        tol = 2 * math.sqrt((s1 ** 2 + s2 ** 2) / n)
        d = m1 - m2
        fmt = ".4f" if key == "coherence" else ".3f"
        lines.append(f"| {LABELS[key].strip()} | {m1:{fmt}} ± {s1:{fmt}} | {m2:{fmt}} ± {s2:{fmt}} | {d:+{fmt}} | "
                     f"{tol:{fmt}} | {'yes' if abs(d) <= tol else 'no'} |")
    (t1, ts1), (t2, ts2) = mean_std(times["ours"]), mean_std(times["multivae"])
    lines.append(f"| train time (s) | {t1:.1f} ± {ts1:.1f} | {t2:.1f} ± {ts2:.1f} | {t1 - t2:+.1f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--draws", type=int, default=10, help="posterior draws averaged in the ELBO figures")
    p.add_argument("--multivae-seed-offset", type=int, default=100)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.draws < 1:
        print("error: --epochs, --batch-size and --draws must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    quiet()
    clf = BACKBONES.get("classifier-indomain-digits")()
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "multivae": []}
    times: dict[str, list[float]] = {"ours": [], "multivae": []}
    wall = time.perf_counter()
    for seed in args.seeds:
        dm, init = build(seed, args.batch_size)
        ours = copy.deepcopy(init)
        with tempfile.TemporaryDirectory() as tmp:
            theirs, t_theirs, best = train_multivae(init, dm.split_tensors("train"), args.epochs, args.batch_size,
                                                    seed + args.multivae_seed_offset, tmp)
            t_ours = train_ours(ours, dm, args.epochs, seed, tmp)
        diff = max_param_diff(ours, theirs)
        for name, model, seconds in (("ours", ours, t_ours), ("multivae", theirs, t_theirs)):
            r = score(model, dm, clf, seed, args.draws)
            rows[name].append(r)
            times[name].append(seconds)
            figures = "  ".join(f"{k} {r[k]:.4f}" for k in METRICS)
            extra = f"  kept epoch {best}/{args.epochs}" if name == "multivae" else ""
            print(f"seed {seed} {name:>8}: {figures}  train {seconds:.1f}s{extra}", flush=True)
        print(f"seed {seed}: max |θ_ours − θ_multivae| = {diff:.3g}", flush=True)
    coherence_real = Coherence(num_classes=10)
    test = dm.split_tensors("test")
    from bench.features import to_uint8
    coherence_real.update(clf.classify(to_uint8(test["image"])), test["label"])
    print(f"\nmvae-late vs MultiVae MVAE, captioned-digits, {args.epochs} epochs, batch {args.batch_size}, seeds "
          f"{args.seeds} (MultiVae seeds + {args.multivae_seed_offset}); coherence-real "
          f"{float(coherence_real.compute()):.4f}; total wall {time.perf_counter() - wall:.0f}s\n")
    print(table(rows, times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
