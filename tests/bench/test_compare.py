"""bench.compare: ours vs torch-fidelity / torchmetrics / clean-fid on the same images and the same weights file.

The weights are the random-init torch-fidelity Inception of tests/conftest.py (``inception_weights_file``); real
weights cannot be downloaded here. Images: 6 per side at 32 px (Inception runs at 299 px, ~0.15 s per image on 2
cores), and KID's subset size is clamped to 6 = both set sizes, so every subset is the whole set and every
backend's KID mean is the same number whatever its random generator.

The 2048-d Fréchet distance makes torch-fidelity (``np.linalg.eigvals``), torchmetrics (``torch.linalg.eigvals``)
and clean-fid (``scipy.linalg.sqrtm``) decompose a dense 2048 × 2048 product, ~15-100 s each on these shared CPUs.
With 6 images per side that product has rank <= 5, so the tests swap those three LAPACK calls for exact low-rank
equivalents (projection onto the product's range); :func:`test_low_rank_stand_ins_equal_lapack` checks them
against the real calls, and they fall back to the real call when the projection does not capture the range.
Everything else each backend does (its resize, feature extraction, statistics, assembly) runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.linalg
import torch
from rich.console import Console

from bench import compare as cmp
from bench.backbones.inception_v3_compat import InceptionV3Compat
from bench.compare import BACKENDS, compare_backends, compare_rows_json, eval_images_adapter, render_compare_table
from bench.errors import InputError
from bench.image_inputs import ImageSet

N = 6
SPLITS = 2
SUBSETS = 3
METRICS = ["fid", "kid", "is"]
_RANK_PROBE = 32  # columns of the random range probe; the products here have rank <= N - 1

pytestmark = pytest.mark.filterwarnings("ignore:.*rank-deficient.*", "ignore:.*clamped.*")

_real_np_eigvals = np.linalg.eigvals
_real_torch_eigvals = torch.linalg.eigvals
_real_sqrtm = scipy.linalg.sqrtm


def _range_basis(a: np.ndarray) -> np.ndarray | None:
    """Orthonormal (d, r) basis Q of range(a), a (d, d) of rank r < k; None if a's rank is larger."""
    d = a.shape[0]
    if d <= 2 * _RANK_PROBE:
        return None
    omega = np.random.default_rng(0).standard_normal((d, _RANK_PROBE))  # (d, k)
    u, s, _ = np.linalg.svd(a @ omega, full_matrices=False)  # (d, k), (k,)
    q = u[:, s > s[0] * 1e-10]  # (d, r): the numerical rank, so no round-off eigenvalue is kept
    residual = np.linalg.norm(a - q @ (q.T @ a)) / max(np.linalg.norm(a), 1e-300)
    return q if residual < 1e-9 else None


def _fast_np_eigvals(a):
    """np.linalg.eigvals for a low-rank (d, d): the r eigenvalues of Qᵀ a Q (a = Q Qᵀ a) and d - r zeros."""
    q = _range_basis(np.asarray(a))
    if q is None:
        return _real_np_eigvals(a)
    small = _real_np_eigvals(q.T @ a @ q)  # (k,) the non-zero eigenvalues of a, and k - rank ~0 ones
    return np.concatenate([small, np.zeros(a.shape[0] - len(small), dtype=small.dtype)])


def _fast_torch_eigvals(a, *args, **kwargs):
    if args or kwargs or a.ndim != 2:
        return _real_torch_eigvals(a, *args, **kwargs)
    values = _fast_np_eigvals(a.detach().cpu().double().numpy())
    return torch.from_numpy(values.astype(np.complex128)).to(a.device)


def _fast_sqrtm(a, disp=True, **kwargs):
    """A matrix with the trace, finiteness and complexness of sqrtm(a) for a low-rank a: Q sqrtm(Qᵀ a Q) Qᵀ
    (clean-fid uses only those of ``linalg.sqrtm(sigma1 @ sigma2)``)."""
    q = _range_basis(np.asarray(a))
    if q is None:
        return _real_sqrtm(a, disp=disp, **kwargs)
    root = q @ _real_sqrtm(q.T @ a @ q) @ q.T
    return root if disp else (root, 0.0)


@pytest.fixture(scope="module")
def fast_linalg():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np.linalg, "eigvals", _fast_np_eigvals)
        mp.setattr(torch.linalg, "eigvals", _fast_torch_eigvals)
        mp.setattr(scipy.linalg, "sqrtm", _fast_sqrtm)
        yield


def test_low_rank_stand_ins_equal_lapack():
    """On a rank-5 product of two 120-d covariances the stand-ins give tr(sqrtm(sigma1 sigma2)) (what every FID
    takes from these calls) exactly; the real calls give it up to the square roots of their ~1e-15 round-off
    eigenvalues (measured 3e-7 relative here). On a full-rank matrix the stand-ins are the real calls."""
    from bench.metrics.fid import trace_sqrt_product

    gen = np.random.default_rng(1)
    x1, x2 = gen.standard_normal((6, 120)), gen.standard_normal((6, 120)) + 0.5  # 6 samples: rank 5
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    a = s1 @ s2  # (120, 120)
    exact = trace_sqrt_product(torch.from_numpy(s1), torch.from_numpy(s2)).item()
    assert exact > 0
    sqrt_sum = lambda values: np.sqrt(np.asarray(values).astype(np.complex128)).real.sum()  # noqa: E731
    assert sqrt_sum(_fast_np_eigvals(a)) == pytest.approx(exact, rel=1e-9)
    assert sqrt_sum(_real_np_eigvals(a)) == pytest.approx(exact, rel=1e-5)
    fast_torch = _fast_torch_eigvals(torch.from_numpy(a))
    assert fast_torch.dtype == torch.complex128 and sqrt_sum(fast_torch.numpy()) == pytest.approx(exact, rel=1e-9)
    assert sqrt_sum(_real_torch_eigvals(torch.from_numpy(a)).numpy()) == pytest.approx(exact, rel=1e-5)
    fast_root, _ = _fast_sqrtm(a, disp=False)
    real_root, _ = _real_sqrtm(a, disp=False)
    assert np.trace(fast_root).real == pytest.approx(exact, rel=1e-9)
    assert np.trace(real_root).real == pytest.approx(exact, rel=1e-5)
    full = gen.standard_normal((120, 120))
    assert _range_basis(full) is None
    np.testing.assert_array_equal(_fast_np_eigvals(full), _real_np_eigvals(full))


def _images(seed: int, scale: float = 1.0) -> torch.Tensor:  # (N, 3, 32, 32) uint8
    x = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return (x.float() * scale).to(torch.uint8)


@pytest.fixture(scope="module")
def image_sets() -> tuple[ImageSet, ImageSet]:
    # A shifted fake distribution, so that FID and KID are clearly non-zero.
    return ImageSet(_images(10), "real-random"), ImageSet(_images(11, scale=0.6), "fake-random")


@pytest.fixture(scope="module")
def ours(inception_weights_file) -> Callable[[ImageSet, ImageSet, list[str]], dict[str, Any]]:
    """evaluate_image_sets on inception-v3-compat (same file), computed once for all metrics and reused."""
    adapter = eval_images_adapter(InceptionV3Compat(weights_path=str(inception_weights_file)), seed=2020,
                                  kid_subsets=SUBSETS, is_splits=SPLITS)
    cache: dict[str, dict[str, Any]] = {}

    def run(real: ImageSet, fake: ImageSet, metrics: list[str]) -> dict[str, Any]:
        if "all" not in cache:
            cache["all"] = adapter(real, fake, METRICS)
        return cache["all"]

    return run


def _compare(image_sets, weights, ours, metrics=METRICS, **kwargs) -> dict[str, cmp.BackendRow]:
    real, fake = image_sets
    rows = compare_backends(real, fake, metrics, str(weights), ours, kid_subsets=SUBSETS, is_splits=SPLITS,
                            batch_size=4, **kwargs)
    return {row.backend: row for row in rows}


@pytest.fixture(scope="module")
def native(image_sets, inception_weights_file, ours, fast_linalg):
    """Every backend with its own default resize; records every torch.load call while they run."""
    loads = []
    real_load = torch.load

    def spy(f, *args, **kwargs):
        loads.append((str(f), kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", spy)
        rows = _compare(image_sets, inception_weights_file, ours)
    return rows, loads


@pytest.fixture(scope="module")
def tf1(image_sets, inception_weights_file, ours, fast_linalg):
    """torchmetrics (antialias=False) and clean-fid (legacy_tensorflow) with the TF1-bilinear resize of ours."""
    rows = _compare(image_sets, inception_weights_file, ours, ["fid", "kid"], backends=["clean-fid"],
                    third_party_resize="tf1-bilinear")
    # FID only: torchmetrics' KID and IS would each build and run their own network once more.
    rows.update(_compare(image_sets, inception_weights_file, ours, ["fid"], backends=["torchmetrics"],
                         third_party_resize="tf1-bilinear"))
    return rows


def test_rows_and_reference(native):
    rows, _ = native
    assert list(rows) == ["ours", *BACKENDS]
    ref = rows["ours"]
    assert ref.values["fid"] > 1 and ref.values["kid"] > 0 and ref.values["is"] > 1
    assert ref.rel_diff == {"fid": 0.0, "kid": 0.0, "is": 0.0}
    assert "resize=tf1-bilinear-299" in ref.protocol and "seed=2020" in ref.protocol


def test_torch_fidelity_agrees_with_ours(native):
    """Same network, same resize: FID and IS to 1e-5, KID to 1e-4 (torch-fidelity's cubic kernel is float32);
    the KID subset size is handed clamped (it errors above n) and its protocol says so."""
    rows, _ = native
    row = rows["torch-fidelity"]
    assert row.not_applicable is None and set(row.values) == {"fid", "kid", "kid_std", "is", "is_std"}
    assert abs(row.rel_diff["fid"]) < 1e-5
    assert abs(row.rel_diff["is"]) < 1e-5
    assert row.values["is_std"] == pytest.approx(rows["ours"].values["is_std"], rel=1e-5, abs=1e-9)
    assert abs(row.rel_diff["kid"]) < 1e-4
    assert f"{SUBSETS} subsets of {N} (clamped from 1000)" in row.protocol
    assert "RandomState(2020)" in row.protocol


def test_torchmetrics_differs_by_its_antialiased_resize(native, tf1):
    """Default (antialias=True): FID moves by more than 1e-4 relative at 32 px; with antialias=False (the
    TF1-compatible resize of ours) it agrees to 1e-5 (torchmetrics returns FID as float32)."""
    rows, _ = native
    row = rows["torchmetrics"]
    assert row.not_applicable is None and "antialias=True" in row.protocol
    assert abs(row.rel_diff["fid"]) > 1e-4
    assert {"kid", "is"} <= set(row.values)
    matched = tf1["torchmetrics"]
    assert "antialias=False" in matched.protocol
    assert abs(matched.rel_diff["fid"]) < 1e-5


def test_clean_fid_row(native, tf1):
    """clean-fid runs on the same network (custom_feat_extractor): no IS (reported), FID/KID with its bicubic
    ``clean`` resize differ from ours; in legacy_tensorflow mode they agree (FID 1e-5, KID 1e-4, float32)."""
    rows, _ = native
    row = rows["clean-fid"]
    assert row.not_applicable is None and set(row.values) == {"fid", "kid"}
    assert "no Inception Score" in row.missing["is"] and "kid_std" in row.missing
    assert "mode=clean" in row.protocol and abs(row.rel_diff["fid"]) > 1e-3
    matched = tf1["clean-fid"]
    assert "legacy_tensorflow" in matched.protocol
    assert abs(matched.rel_diff["fid"]) < 1e-5
    assert abs(matched.rel_diff["kid"]) < 1e-4


def test_third_parties_never_unpickle_the_given_file(native, inception_weights_file):
    """The given file is read only with weights_only=True; the weights_only=False loads of torch-fidelity and
    torchmetrics are of the verified, tensors-only copy."""
    _, loads = native
    given = str(inception_weights_file)
    assert (given, True) in loads
    assert all(weights_only for path, weights_only in loads if path == given)
    assert any(not weights_only and path.endswith("inception-verified.pth") for path, weights_only in loads)


def test_table_and_json(native):
    rows, _ = native
    console = Console(record=True, width=400)
    console.print(render_compare_table(list(rows.values())))
    text = console.export_text()
    for name in ("ours", *BACKENDS):
        assert name in text
    for header in ("FID", "KID", "IS", "FID rel. diff", "KID rel. diff", "IS rel. diff", "protocol"):
        assert header in text
    assert "clean-fid has no Inception Score" in text
    data = json.loads(json.dumps(compare_rows_json(list(rows.values())), allow_nan=False))
    assert data["reference"] == "ours" and [r["backend"] for r in data["rows"]] == ["ours", *BACKENDS]
    assert data["rows"][1]["rel_diff"]["fid"] == rows["torch-fidelity"].rel_diff["fid"]


def test_not_applicable_rows(image_sets, inception_weights_file, ours, monkeypatch):
    """IS only: clean-fid is not applicable (no IS); an absent package is "not installed"; a backend that raises
    is a row saying so, not a crash. Rendered with the reason."""
    rows = _compare(image_sets, inception_weights_file, ours, ["is"], backends=["clean-fid"])
    assert rows["clean-fid"].not_applicable == "clean-fid has no Inception Score" and not rows["clean-fid"].values
    import importlib.util

    real_find_spec = importlib.util.find_spec
    absent = lambda name, *args: None if name == "cleanfid" else real_find_spec(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", absent)
    import torch_fidelity

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", broken)
    rows = _compare(image_sets, inception_weights_file, ours, ["fid"], backends=["torch-fidelity", "clean-fid"])
    assert rows["clean-fid"].not_applicable == "not installed (pip install clean-fid)"
    assert rows["torch-fidelity"].not_applicable == "failed: RuntimeError: boom"
    console = Console(record=True, width=300)
    console.print(render_compare_table(list(rows.values())))
    assert "not applicable: not installed" in console.export_text()


def test_bad_requests(image_sets, inception_weights_file, ours, tmp_path):
    real, fake = image_sets
    with pytest.raises(ValueError, match="covers fid, kid, is"):
        compare_backends(real, fake, ["prc"], str(inception_weights_file), ours)
    with pytest.raises(ValueError, match="unknown backend"):
        compare_backends(real, fake, ["fid"], str(inception_weights_file), ours, backends=["pytorch-fid"])
    with pytest.raises(ValueError, match="no value"):
        compare_backends(real, fake, ["fid"], str(inception_weights_file), lambda r, f, m: {"kid": 1.0})
    bad = tmp_path / "not-weights.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not-weights.pth"):
        compare_backends(real, fake, ["fid"], str(bad), ours, backends=["torch-fidelity"])


def test_cli_compare_prints_every_backend(tmp_path, capsys, inception_weights_file, fast_linalg):
    """``bench eval --compare`` on two .npz sets: our values, then one table row per backend (JSON: ``compare``);
    ``--compare`` with another backbone, or with ``--n``, is one line, exit 2."""
    from bench.cli import main

    real, fake = _images(20)[:6], _images(21, scale=0.6)[:6]
    a, b = tmp_path / "real.npz", tmp_path / "fake.npz"
    np.savez(a, images=real.numpy())
    np.savez(b, images=fake.numpy())
    args = ["eval", "--real", str(a), "--fake", str(b), "--metrics", "fid,kid,is", "--backbone", "inception-v3-compat",
            "--backbone-weights", str(inception_weights_file), "--kid-subsets", "3", "--is-splits", "2", "--compare"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {row["backend"]: row for row in result["compare"]["rows"]}
    assert {"ours", "torch-fidelity", "torchmetrics", "clean-fid"} <= set(rows)
    assert rows["ours"]["values"]["fid"] == pytest.approx(result["fid"])
    assert abs(rows["torch-fidelity"]["rel_diff"]["fid"]) < 1e-5
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fid:" in out and "torch-fidelity" in out and "clean-fid" in out
    assert main([*args, "--n", "4"]) == 2 and "drop --n" in capsys.readouterr().err
    assert main([*args[:7], "--compare"]) == 2 and "inception-v3-compat" in capsys.readouterr().err
