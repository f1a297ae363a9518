"""Our VAE (and β-VAE, InfoVAE, VQ-VAE) against pythae's (Chadebec et al., 2022): own pipelines, one scorer.

Per seed: one randomly initialized ``vae`` (our ConvEncoder / ConvDecoder, Bernoulli likelihood) is built; pythae's
``VAE`` (``reconstruction_loss="bce"``) gets deep copies of the same networks with the same initial weights
(``tests.peers.adapters``). Ours trains with a Lightning ``Trainer``; pythae's with its own ``BaseTrainer`` (its
Adam, its shuffling, ``keep_best_on_train``: with no eval set it keeps the epoch of lowest mean train loss).
Same data (the ``digits`` datamodule's train split, or ``--dataset fashion-mnist`` with a subset), batch size,
learning rate, epochs and seed. Both trained networks are then loaded into our ``VAE`` class and scored on the
test split by the same code: the single-sample ELBO (posterior noise seeded), its reconstruction and KL terms, and
the IWAE bound with K draws (``nll``, seeded generator); pythae's own ``get_nll`` (K draws per image) is reported
too, for both models, as an independent scorer.

Equal seeds pair the runs: both pipelines seed the global RNG and draw the shuffle order and the posterior noise
from it in the same order, so seed s of ours and of pythae follow nearly the same trajectory (apart from float32
rounding); ``--pythae-seed-offset 100`` makes the pythae runs independent draws instead. First, a lock-step
check trains both objectives in one plain loop on identical batches and noise, in float32 and float64.

Prints per-seed rows, mean ± sample std per library, the difference of means, the largest per-seed (paired)
difference and the seed-noise tolerance ``2·sqrt(s_ours²/n + s_pythae²/n)`` (about two standard errors of the
difference of means): a |Δ| under it is no evidence of a difference between the implementations.

``--model`` picks the pair (default ``vae``, the behaviour above; ``all`` runs the four in turn). The others keep
our defaults, and their pythae counterparts are configured to match (``tests.peers.adapters``):

* ``beta-vae``: pythae ``BetaVAE`` ("bce") with our β (4). Scored as the VAE, plus the trained objective
  rec + β·KL on the test set.
* ``info-vae``: pythae ``INFOVAE_MMD`` ("bce") with our kernel (IMQ), α (0), λ (``lbd`` = 100), bandwidth 1 and one
  scale (C = 2·latent_dim in both). Scored as the VAE, plus the test MMD² (one posterior draw per test image
  against as many N(0, I) draws) and the trained objective.
* ``vq-vae``: pythae ``VQVAE`` with our K (128), D (16), commitment β (0.25), EMA codebook (decay 0.99), our
  initial codebook copied in, and its loss rewritten in our units (Bernoulli reconstruction, VQ loss × D·h·w:
  pythae's VQ-VAE has only an MSE likelihood). Ours runs without dead-code resets (``--dead-code-steps 0``,
  pythae has none). Scored deterministically: test reconstruction MSE of the decoder mean (summed over pixels),
  Bernoulli NLL, commitment distance (summed over the code grid), code perplexity and codes used.

The lock-step check runs for ``vae`` only (the per-term equalities of the others are tests/peers/).

Command: ``.venv/bin/python benchmarks/peers.py [--model vae] [--seeds 0 1 2] [--epochs 15]
[--pythae-seed-offset 0] [--dataset digits]``; about 3–4 minutes on a shared 2-core CPU with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.peers.adapters

import lightning.pytorch as pl  # noqa: E402

from datamodules import DATAMODULES  # noqa: E402
from models import MODELS  # noqa: E402
from models.vae.vae import VAE  # noqa: E402

METRICS = ("elbo", "rec", "kl", "iwae", "pythae_nll")
LABELS = {
    "elbo": "−ELBO (nats)",
    "rec": "rec. NLL (nats)",
    "kl": "KL (nats)",
    "iwae": "IWAE NLL, ours (nats)",
    "pythae_nll": "NLL, pythae get_nll (nats)",
    "objective": "training objective (nats)",
    "mmd": "MMD² (test set)",
    "mse": "rec. MSE (per image)",
    "vq_rec": "rec. NLL, Bernoulli (nats)",
    "commitment": "commitment ‖z_e − e‖² (per image)",
    "perplexity": "code perplexity (test)",
    "codes_used": "codes used (test, of K)",
}
DIGITS = {"mmd": 4}  #: decimals of a metric in the printout (2 unless listed)
MODEL_METRICS = {
    "vae": METRICS,
    "beta-vae": ("elbo", "rec", "kl", "objective", "iwae", "pythae_nll"),
    "info-vae": ("elbo", "rec", "kl", "mmd", "objective", "iwae", "pythae_nll"),
    "vq-vae": ("mse", "vq_rec", "commitment", "perplexity", "codes_used"),
}


def load_data(name: str, image_size: int, subset: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) image tensors (N, 1, S, S) in [0, 1]; ``subset`` caps both (the test at subset // 5)."""
    kwargs = {"image_size": image_size} if name == "digits" else {}
    dm = DATAMODULES.get(name)(**kwargs)
    dm.setup()
    train, test = dm.split_tensors("train")["image"], dm.split_tensors("test")["image"]
    if subset:
        train, test = train[:subset], test[: max(subset // 5, 64)]
    return train, test


def train_ours(model: VAE, train: torch.Tensor, args: argparse.Namespace, seed: int, tmp: str) -> float:
    """Lightning fit of ``model`` for ``args.epochs``; returns wall seconds."""
    from torch.utils.data import DataLoader

    from datamodules.base import TensorDictDataset

    pl.seed_everything(seed, verbose=False)
    loader = DataLoader(TensorDictDataset(image=train), batch_size=args.batch_size, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=tmp,
    )
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader)
    return time.perf_counter() - start


def train_pythae(model: torch.nn.Module, train: torch.Tensor, args: argparse.Namespace, seed: int, tmp: str,
                 kind: str = "vae") -> tuple[torch.nn.Module, float]:
    """pythae ``BaseTrainer`` fit of its ``kind`` counterpart on copies of ``model``'s networks (and codebook);
    returns the trained networks loaded into a copy of our ``model``, and the wall seconds."""
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    quiet_pythae_loggers()
    theirs = pythae_peer(kind)(model)  # deep copies of the (still untrained) networks
    config = BaseTrainerConfig(
        output_dir=tmp, num_epochs=args.epochs, learning_rate=args.lr, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, optimizer_cls="Adam", seed=seed, no_cuda=True,
    )
    dataset = BaseDataset(train, torch.zeros(len(train)))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = BaseTrainer(model=theirs, train_dataset=dataset, eval_dataset=None, training_config=config)
        trainer.train()
    seconds = time.perf_counter() - start
    best = trainer._best_model  # what pythae saves as final_model
    scored = copy.deepcopy(model)
    scored.encoder.load_state_dict(best.encoder.net.state_dict())
    scored.decoder.load_state_dict(best.decoder.net.state_dict())
    if kind == "vq-vae":  # the trained codebook (EMA: pythae's buffer; else its nn.Embedding)
        q = best.quantizer
        with torch.no_grad():
            scored.quantizer.codebook.copy_(q.embeddings if torch.is_tensor(q.embeddings) else q.embeddings.weight)
    return scored, seconds


def pythae_peer(kind: str) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The builder of pythae's counterpart of our ``kind`` (``tests.peers.adapters``; imports pythae)."""
    from tests.peers import adapters

    return {"vae": adapters.pythae_vae, "beta-vae": adapters.pythae_beta_vae,
            "info-vae": adapters.pythae_info_vae, "vq-vae": adapters.pythae_vq_vae}[kind]


def quiet_pythae_loggers() -> None:
    """pythae's modules each set their own INFO level and stdout handler; raise them to ERROR."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.ERROR)


@torch.no_grad()
def score(model: VAE, test: torch.Tensor, k: int, seed: int) -> dict[str, float]:
    """Test-set means (nats per image) by our scorer, and pythae's ``get_nll`` on the same networks."""
    from tests.peers.adapters import pythae_vae

    model.eval()
    torch.manual_seed(seed)
    rec, kl, _ = model._loss_terms(test)
    iwae = torch.cat([
        model.nll(chunk, num_samples=k, generator=torch.Generator().manual_seed(seed + i))
        for i, chunk in enumerate(test.split(128))
    ])
    theirs = pythae_vae(model, share=True).eval()
    torch.manual_seed(seed)
    pythae_log_p = theirs.get_nll(test, n_samples=k, batch_size=k)
    return {
        "elbo": float((rec + kl).mean()), "rec": float(rec.mean()), "kl": float(kl.mean()),
        "iwae": float(iwae.mean()), "pythae_nll": -float(pythae_log_p),
    }


@torch.no_grad()
def score_gaussian(model: VAE, test: torch.Tensor, k: int, seed: int, kind: str) -> dict[str, float]:
    """``score`` plus, for β-VAE / InfoVAE, the trained objective on the test set (and InfoVAE's MMD² between the
    test posterior draws and as many N(0, I) draws, drawn right after them)."""
    from models.vae.likelihood import mmd

    model.eval()
    torch.manual_seed(seed)
    rec, kl, z = model._loss_terms(test)  # (N,) (N,) (N, Z)
    extra = {}
    h = model.hparams
    if kind == "beta-vae":
        extra["objective"] = float((rec + h.beta * kl).mean())
    else:  # info-vae
        mmd2 = mmd(z, torch.randn_like(z), kernel=h.kernel)
        extra["mmd"] = float(mmd2)
        extra["objective"] = float((rec + (1 - h.alpha) * kl).mean() + (h.alpha + h.lambda_mmd - 1) * mmd2)
    return {**score(model, test, k, seed), **extra}


@torch.no_grad()
def score_vq(model: torch.nn.Module, test: torch.Tensor) -> dict[str, float]:
    """VQ-VAE test means (deterministic): squared error of the decoder mean at the nearest codes, summed over
    pixels; the Bernoulli NLL it was trained on; the commitment distance summed over the code grid; the test
    codes' perplexity and how many of the K codes they use."""
    from models.vae.vq_vae import code_usage_stats

    model.eval()
    t = model._forward_terms(test)
    mean = torch.sigmoid(model.decoder(model.quantizer.lookup(t["idx"])))  # (N, C, H, W)
    perplexity, usage = code_usage_stats(t["idx"], model.hparams.num_codes)
    return {"mse": float((mean - test).pow(2).flatten(1).sum(1).mean()), "vq_rec": float(t["rec"].mean()),
            "commitment": float(t["commitment"].mean()), "perplexity": float(perplexity),
            "codes_used": float(usage) * model.hparams.num_codes}


def lockstep(shape: tuple[int, ...], train: torch.Tensor, args: argparse.Namespace, seed: int,
             dtype: torch.dtype) -> dict[str, float]:
    """Both objectives trained in one plain loop on identical batches and identical posterior noise (Adam each).

    Isolates the objectives from the pipelines: any gap here is floating-point rounding (ours uses
    BCE-with-logits, pythae BCE on sigmoid outputs) growing through the optimization.
    """
    from tests.peers.adapters import pythae_vae

    pl.seed_everything(seed, verbose=False)
    ours = MODELS.get("vae")(image_shape=shape, latent_dim=args.latent_dim, width=args.width, lr=args.lr)
    ours = ours.to(dtype).train()
    theirs = pythae_vae(ours).train()
    opt_ours, opt_theirs = torch.optim.Adam(ours.parameters(), args.lr), torch.optim.Adam(theirs.parameters(), args.lr)
    g = torch.Generator().manual_seed(seed)
    max_rel, first = 0.0, None
    for step in range(args.lockstep_steps):
        x = train[torch.randint(len(train), (args.batch_size,), generator=g)].to(dtype)  # (B, C, H, W)
        torch.manual_seed(step)
        loss_ours, _ = ours.training_loss(x, "train")
        torch.manual_seed(step)
        loss_theirs = theirs({"data": x}).loss
        first = first if first is not None else float(loss_ours)
        max_rel = max(max_rel, abs(float(loss_ours - loss_theirs)) / abs(float(loss_theirs)))
        for opt, loss in ((opt_ours, loss_ours), (opt_theirs, loss_theirs)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    def flat(*modules: torch.nn.Module) -> torch.Tensor:  # encoder, then decoder (pythae registers the decoder first)
        return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])

    ours_params, their_params = flat(ours.encoder, ours.decoder), flat(theirs.encoder, theirs.decoder)
    return {"first": first, "last": float(loss_ours), "max_rel": max_rel,
            "param_gap": float((ours_params - their_params).abs().max()),
            "param_scale": float(ours_params.abs().max())}


def build_ours(kind: str, shape: tuple[int, ...], args: argparse.Namespace) -> torch.nn.Module:
    """Our ``kind`` with the shared sizes and lr; its other hyperparameters keep our defaults (pythae is matched to
    them by ``tests.peers.adapters``), except the VQ-VAE's dead-code resets, which pythae lacks."""
    extra = {"dead_code_steps": args.dead_code_steps} if kind == "vq-vae" else {}
    return MODELS.get(kind)(image_shape=shape, latent_dim=args.latent_dim, width=args.width, lr=args.lr, **extra)


def compare(kind: str, shape: tuple[int, ...], train: torch.Tensor, test: torch.Tensor,
            args: argparse.Namespace) -> None:
    """Per seed: ours and pythae's ``kind`` from the same initial weights, each trained by its pipeline, scored by
    one scorer; prints per-seed rows and the table."""
    metrics = MODEL_METRICS[kind]
    if kind != "vae":
        hp = {k: v for k, v in build_ours(kind, shape, args).hparams.items() if k != "image_shape"}
        print(f"--- {kind}: ours {hp} vs pythae {type(pythae_peer(kind)(build_ours(kind, shape, args))).__name__}")
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "pythae": []}
    for seed in args.seeds:
        pl.seed_everything(seed, verbose=False)
        ours = build_ours(kind, shape, args)
        init = copy.deepcopy(ours)
        with tempfile.TemporaryDirectory() as tmp:
            theirs, t_theirs = train_pythae(init, train, args, seed + args.pythae_seed_offset, tmp, kind)
            t_ours = train_ours(ours, train, args, seed, tmp)
        for name, model, seconds in (("ours", ours, t_ours), ("pythae", theirs, t_theirs)):
            if kind == "vae":
                r = score(model, test, args.k, seed=10_000 + seed)
            elif kind == "vq-vae":
                r = score_vq(model, test)
            else:
                r = score_gaussian(model, test, args.k, seed=10_000 + seed, kind=kind)
            r["train_s"] = seconds
            rows[name].append(r)
            figures = "  ".join(f"{m} {r[m]:.{DIGITS.get(m, 2)}f}" for m in metrics)
            print(f"seed {seed} {name:>6}: {figures}  train {seconds:.1f}s")

    n = len(args.seeds)
    print()
    print(f"| metric (test, per image) | ours (mean ± std, n={n}) | pythae (mean ± std, n={n}) | Δ ours − pythae "
          "| max per-seed abs(Δ) | seed-noise tolerance | within? |")
    print("|---|---|---|---|---|---|---|")
    for m in metrics:
        a, b = [r[m] for r in rows["ours"]], [r[m] for r in rows["pythae"]]
        delta = statistics.fmean(a) - statistics.fmean(b)
        tol = 2 * math.sqrt((statistics.variance(a) + statistics.variance(b)) / n) if n > 1 else float("nan")
        paired = max(abs(x - y) for x, y in zip(a, b, strict=True))
        d = DIGITS.get(m, 2)
        print(f"| {LABELS[m]} | {mean_std(a, d)} | {mean_std(b, d)} | {delta:+.{d}f} | {paired:.{d}f} | {tol:.{d}f} | "
              f"{'yes' if abs(delta) <= tol else 'no'} |")
    ta, tb = [r["train_s"] for r in rows["ours"]], [r["train_s"] for r in rows["pythae"]]
    print(f"| train time (s) | {mean_std(ta)} | {mean_std(tb)} | | | | |")
    print()
    m1, m2 = ("mse", "vq_rec") if kind == "vq-vae" else ("elbo", "iwae")
    print(f"per seed ({'rec. MSE / rec. NLL' if kind == 'vq-vae' else '−ELBO / IWAE NLL'}): " + "; ".join(
        f"seed {s}: ours {o[m1]:.2f} / {o[m2]:.2f}, pythae {p[m1]:.2f} / {p[m2]:.2f}"
        for s, o, p in zip(args.seeds, rows["ours"], rows["pythae"], strict=True)
    ))


def mean_std(values: list[float], digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae", choices=["vae", "beta-vae", "info-vae", "vq-vae", "all"],
                        help="which autoencoder to compare with its pythae counterpart (all: the four in turn)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--image-size", type=int, default=16, help="digits only (8 is native; 16 as the quick suite)")
    parser.add_argument("--subset", type=int, default=None, help="cap on training images (fashion-mnist: 6000)")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=64, help="importance samples of both NLL bounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pythae-seed-offset", type=int, default=0,
                        help="pythae trains with seed + offset (same initial weights): 0 pairs the runs (both "
                             "pipelines draw shuffling and noise from the global RNG in the same order), > 0 makes "
                             "them independent draws, compared by the seed-noise tolerance")
    parser.add_argument("--dead-code-steps", type=int, default=0,
                        help="vq-vae: our dead-code resets (pythae has none; 0 matches it, 50 is our default)")
    parser.add_argument("--lockstep-steps", type=int, default=300, help="steps of the lock-step check (0: skip)")
    args = parser.parse_args()
    if args.dataset == "fashion-mnist" and args.subset is None:
        args.subset = 6000
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    train, test = load_data(args.dataset, args.image_size, args.subset)
    shape = tuple(train.shape[1:])
    print(f"data: {args.dataset} {shape}, {len(train)} train / {len(test)} test images; {args.model if args.model != 'all' else 'each model'} latent_dim="
          f"{args.latent_dim} width={args.width}; {args.epochs} epochs × batch {args.batch_size}, Adam lr {args.lr}; "
          f"seeds {args.seeds} (pythae + {args.pythae_seed_offset}); K = {args.k}; torch threads {args.threads}")
    for dtype in (torch.float32, torch.float64) if args.lockstep_steps and args.model in ("vae", "all") else ():
        ls = lockstep(shape, train, args, seed=args.seeds[0], dtype=dtype)
        print(f"lock-step {str(dtype)[6:]} ({args.lockstep_steps} Adam steps, same batches and noise, seed "
              f"{args.seeds[0]}): loss {ls['first']:.2f} -> {ls['last']:.2f}, max |loss gap| / loss "
              f"{ls['max_rel']:.1e}, final max |weight gap| {ls['param_gap']:.1e} (max |weight| "
              f"{ls['param_scale']:.2f})")
    for kind in ("vae", "beta-vae", "info-vae", "vq-vae") if args.model == "all" else (args.model,):
        compare(kind, shape, train, test, args)
    print(f"total runtime {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
