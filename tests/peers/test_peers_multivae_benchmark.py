"""``benchmarks/peers_multivae.py``: ``mvae-late`` and MultiVae's MVAE trained from one init, scored by one scorer.

Tiny settings (128 train pairs, one epoch): the wiring is checked, not the numbers. MultiVae's trainer must actually
optimise *our* modules (a copy: the shared init stays untouched) and lower MVAE's objective on what it saw; the
scorer must be deterministic, self-consistent (the joint −ELBO is the sum of its parts) and tell a trained model
from its init; the table's tolerance is 2·sqrt((s1² + s2²)/n).
"""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("multivae", reason="MultiVae (optional reference) is not installed")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("peers_multivae", ROOT / "benchmarks" / "peers_multivae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")


def objective(model, tensors: dict[str, torch.Tensor], seed: int = 3) -> float:
    """Our MVAE training objective on ``tensors`` with seeded posterior noise."""
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(model.training_objective({"image": tensors["image"], "text": tensors["text"]})[0])


def test_multivae_trainer_trains_a_copy_of_our_modules(bench, tmp_path) -> None:
    dm, init = bench.build(0)
    small = {k: v[:128] for k, v in dm.split_tensors("train").items()}
    before = copy.deepcopy(init.state_dict())
    trained, seconds, best_epoch = bench.train_multivae(init, small, epochs=1, batch_size=64, seed=100,
                                                       tmp=str(tmp_path))
    assert type(trained) is type(init) and trained is not init
    assert all(torch.equal(before[k], v) for k, v in init.state_dict().items()), "the shared init was modified"
    assert bench.max_param_diff(trained, init) > 1e-4  # two Adam steps at lr 1e-3 moved the weights
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(init.named_parameters())[n])]
    assert len(moved) == len(list(init.parameters())), "every module of ours is in MultiVae's optimizer"
    assert objective(trained, small) < objective(init, small)
    assert best_epoch == 1 and seconds > 0
    assert torch.distributions.Distribution._validate_args, "argument validation is restored"


def test_lightning_fit_and_scorer(bench, tmp_path) -> None:
    from bench.backbones import BACKBONES

    dm, init = bench.build(1)
    ours = copy.deepcopy(init)
    bench.train_ours(ours, dm, epochs=1, seed=1, tmp=str(tmp_path), limit_batches=3)
    assert bench.max_param_diff(ours, init) > 1e-4
    clf = BACKBONES.get("classifier-indomain-digits")()
    first, again = bench.score(ours, dm, clf, seed=1, draws=2), bench.score(ours, dm, clf, seed=1, draws=2)
    assert first == again, "the scorer is seeded"
    assert set(first) == set(bench.METRICS)
    assert first["nelbo"] == pytest.approx(first["rec_image"] + first["rec_text"] + first["kl"], rel=1e-12)
    assert 0.0 <= first["coherence"] <= 1.0 and first["kl"] > 0 and first["rec_text"] > 0
    untrained = bench.score(init, dm, clf, seed=1, draws=2)
    assert untrained["nelbo"] > first["nelbo"], "three Adam steps lower the test −ELBO of a fresh init"


def test_table_tolerance_and_bad_input(bench) -> None:
    base = {k: 0.0 for k in bench.METRICS}
    rows = {"ours": [{**base, "nelbo": v} for v in (1.0, 2.0, 3.0)],
            "multivae": [{**base, "nelbo": v} for v in (4.0, 4.0, 4.0)]}
    text = bench.table(rows, {"ours": [1.0, 1.0, 1.0], "multivae": [2.0, 2.0, 2.0]})
    line = next(x for x in text.splitlines() if x.startswith("| -ELBO(x, w)"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "2.000 ± 1.000" and cells[2] == "4.000 ± 0.000" and cells[3] == "-2.000"
    assert cells[4] == f"{2 * math.sqrt(1 / 3):.3f}" and cells[5] == "no"  # 2·sqrt((1 + 0)/3) = 1.155 < 2
    assert bench.main(["--epochs", "0"]) == 2
