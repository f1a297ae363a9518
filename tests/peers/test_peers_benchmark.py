"""``benchmarks/peers.py --model``: the training-level peer comparison runs for each autoencoder and prints its table.

Tiny settings (64 train images, one epoch, two seeds): the point is the wiring (our model and its pythae counterpart
built, trained by their pipelines, loaded back and scored), not the numbers. The VQ-VAE counterpart's rewritten
loss is checked against ours on a real batch, since the table's meaning rests on it.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("pythae", reason="pythae not installed (pip install pythae --no-deps)")

from models import MODELS  # noqa: E402
from tests.peers.adapters import pythae_vq_vae  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "vae": ["−ELBO (nats)", "IWAE NLL, ours (nats)", "NLL, pythae get_nll (nats)"],
    "beta-vae": ["−ELBO (nats)", "KL (nats)", "training objective (nats)"],
    "info-vae": ["KL (nats)", "MMD² (test set)", "training objective (nats)"],
    "vq-vae": ["rec. MSE (per image)", "commitment ‖z_e − e‖² (per image)", "code perplexity (test)"],
}


def load_peers():
    spec = importlib.util.spec_from_file_location("peers_benchmark", ROOT / "benchmarks" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_all_runs_each_pair_and_prints_its_table(monkeypatch, capsys) -> None:
    peers = load_peers()
    argv = ["peers.py", "--model", "all", "--subset", "64", "--epochs", "1", "--seeds", "0", "1", "--k", "2",
            "--lockstep-steps", "0", "--pythae-seed-offset", "100", "--latent-dim", "4", "--width", "8"]
    monkeypatch.setattr(sys, "argv", argv)
    torch.set_num_threads(1)
    peers.main()
    out = capsys.readouterr().out
    sections = re.split(r"^--- ", out, flags=re.M)  # the vae table comes first, then one section per model
    assert len(sections) == 4
    for name, text in zip(ROWS, [sections[0], *sections[1:]], strict=True):
        if name != "vae":
            assert text.startswith(name + ":")
        for label in ROWS[name]:
            row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            ours, theirs = (float(c.split("±")[0]) for c in cells[1:3])
            assert math.isfinite(ours) and math.isfinite(theirs)
            assert cells[-1] in ("yes", "no")
    # The Gaussian VAEs share the networks' scorer: −ELBO ≥ IWAE NLL on average (K = 2 bound is tighter).
    elbo = float(re.search(r"^\| −ELBO \(nats\) \| ([\d.]+)", sections[0], re.M).group(1))
    iwae = float(re.search(r"^\| IWAE NLL, ours \(nats\) \| ([\d.]+)", sections[0], re.M).group(1))
    assert iwae <= elbo + 0.5


def test_pythae_vq_vae_loss_is_ours_in_our_units() -> None:
    """The counterpart trained by the benchmark: pythae's VQVAE with its loss rewritten (Bernoulli rec, VQ × D·h·w)
    gives our training loss rec + β·commitment on a real batch, and the same quantized codes."""
    from datamodules import DATAMODULES

    dm = DATAMODULES.get("digits")(image_size=16)
    dm.setup()
    x = dm.split_tensors("train")["image"][:16]
    torch.manual_seed(0)
    ours = MODELS.get("vq-vae")(image_shape=(1, 16, 16), num_codes=16, latent_dim=4, width=8, dead_code_steps=0)
    with torch.no_grad():  # spread the codebook over encoder outputs, so several codes are used
        flat = ours.quantizer.flatten(ours.encoder(x))
        ours.quantizer.codebook.copy_(flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[:16]])
        ours.quantizer.ema_sum.copy_(ours.quantizer.codebook)
    theirs = pythae_vq_vae(ours).eval()  # eval: no EMA update inside the forward
    ours.eval()
    with torch.no_grad():
        t = ours._forward_terms(x)
        out = theirs({"data": x})
    assert len(t["idx"].unique()) >= 4
    assert torch.equal(out.quantized_indices.squeeze(1), t["idx"])
    expected = (t["rec"] + ours.hparams.commitment * t["commitment"]).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.vq_loss.item() == pytest.approx((ours.hparams.commitment * t["commitment"]).mean().item(), rel=1e-5)
