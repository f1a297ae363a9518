"""``bench eval --compare``: the same two image sets scored by our evaluator and by the reference packages.

Every backend runs on the same Inception weights file (:func:`compare_backends`'s ``weights_path``); one that
cannot use it is reported as not applicable rather than run with other weights. Each row records the backend's
protocol (resize, dtypes, seeds, subsets), because that is what explains a difference:

* ``torch-fidelity``: ``calculate_metrics`` with ``feature_extractor_weights_path``; the TF1-compatible bilinear
  resize of ``inception-v3-compat``, so it should equal ours (ours uses the same network). IS is computed on its
  ``input1``, so ``input1`` is the fake set. It errors when ``kid_subset_size`` > n, so it gets the clamped size.
* ``torchmetrics``: ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` / ``InceptionScore`` on its
  ``NoTrainInceptionV3`` loading the same file. Its default resize is ``F.interpolate(bilinear, antialias=True)``,
  which moves the values whenever images are not 299 px; ``third_party_resize="tf1-bilinear"`` sets
  ``antialias=False`` (the TF1-compatible resize, as ours). Its KID and IS draw subsets / shuffle with the global
  torch generator, seeded here with ``seed`` (inside ``fork_rng``); its IS std is Bessel-corrected.
* ``clean-fid``: ``compute_fid(custom_feat_extractor=...)`` with torch-fidelity's network built from the same
  state dict, on the images written as exact uint8 ``.npy`` files. ``mode="clean"`` (its default) resizes with
  PIL bicubic in float32 (ours with ``resize_mode="clean"`` matches it); ``third_party_resize="tf1-bilinear"``
  uses its ``legacy_tensorflow`` mode, where images enter the network unresized. ``compute_kid`` takes no custom
  extractor, so KID is clean-fid's ``kernel_distance`` on the features ``compute_fid`` extracted (mean only, its
  subsets drawn by the global numpy generator seeded with ``seed``). clean-fid has no Inception Score.

torch-fidelity and torchmetrics unpickle the weights file with ``torch.load(weights_only=False)``. They are
therefore never handed ``weights_path`` itself: it is read with ``weights_only=True``, checked strictly against
the network, and re-saved (tensors only) to a private temporary file, which is what they load.

KID: with ``subset_size`` equal to both set sizes every subset is the whole set, so every backend's KID mean is
the same number whatever its random generator; with smaller subsets each backend's draws differ and the values
differ by sampling noise (the row's protocol says which generator it uses).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import numpy as np
import torch
from rich.table import Table

from bench.image_inputs import ImageSet
from bench.provenance import package_version

#: Metrics --compare covers, and the value keys each one yields (mean first).
METRIC_KEYS: dict[str, tuple[str, ...]] = {"fid": ("fid",), "kid": ("kid", "kid_std"), "is": ("is", "is_std")}
#: Third-party backends, in table order.
BACKENDS = ("torch-fidelity", "torchmetrics", "clean-fid")
#: Distribution names of the backends, for versions and install hints.
_DISTRIBUTIONS = {"ours": "genfusion-bench", "torch-fidelity": "torch-fidelity", "torchmetrics": "torchmetrics",
                  "clean-fid": "clean-fid"}
_MODULES = {"torch-fidelity": "torch_fidelity", "torchmetrics": "torchmetrics", "clean-fid": "cleanfid"}
THIRD_PARTY_RESIZES = ("native", "tf1-bilinear")


@dataclass
class BackendRow:
    """One backend's scores of the same two image sets.

    Attributes:
        backend: ``ours``, ``torch-fidelity``, ``torchmetrics`` or ``clean-fid``.
        version: Installed version of its package (``not installed`` if absent).
        values: ``fid``, ``kid``, ``kid_std``, ``is``, ``is_std`` (those it computed).
        rel_diff: (value - ours) / |ours| per metric (``fid``, ``kid``, ``is``: the mean; not the stds, whose
            reference can be ~0); 0.0 for ours itself, ``inf`` when ours is 0 and the value is not.
        protocol: How this backend computed them (resize, dtypes, seeds, subsets).
        not_applicable: Why the whole backend was not run (then ``values`` is empty), else None.
        missing: Metric asked for -> why this backend gives no value for it (e.g. clean-fid has no IS).
    """

    backend: str
    version: str
    values: dict[str, float] = field(default_factory=dict)
    rel_diff: dict[str, float] = field(default_factory=dict)
    protocol: str = ""
    not_applicable: str | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Config:
    metrics: tuple[str, ...]
    weights: str  # the verified copy of the weights file
    seed: int
    kid_subsets: int
    kid_subset_size: int  # as asked; each backend clamps (or is given the clamped size)
    is_splits: int
    batch_size: int
    resize: str  # one of THIRD_PARTY_RESIZES

    def clamped_subset_size(self, real: ImageSet, fake: ImageSet) -> int:
        return min(self.kid_subset_size, len(real.images), len(fake.images))

    def subset_note(self, real: ImageSet, fake: ImageSet) -> str:
        size = self.clamped_subset_size(real, fake)
        return f" (clamped from {self.kid_subset_size})" if size < self.kid_subset_size else ""


def _rgb(images: torch.Tensor) -> torch.Tensor:  # (N, 1|3, H, W) uint8 -> (N, 3, H, W) uint8
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _batches(images: torch.Tensor, batch_size: int):  # yields (B, 3, H, W) uint8
    images = _rgb(images)
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


class _UInt8Dataset(torch.utils.data.Dataset):
    """(3, H, W) uint8 images, the tensor input torch_fidelity.calculate_metrics accepts."""

    def __init__(self, images: torch.Tensor) -> None:  # (N, 1|3, H, W) uint8
        self.images = _rgb(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:  # (3, H, W) uint8
        return self.images[i]


def _torch_fidelity(real: ImageSet, fake: ImageSet, cfg: _Config) -> BackendRow:
    import torch_fidelity

    metrics = cfg.metrics
    subset = cfg.clamped_subset_size(real, fake)
    two_sets = "fid" in metrics or "kid" in metrics
    out = torch_fidelity.calculate_metrics(
        input1=_UInt8Dataset(fake.images),  # IS is computed on input1
        input2=_UInt8Dataset(real.images) if two_sets else None,
        fid="fid" in metrics, kid="kid" in metrics, isc="is" in metrics,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=cfg.weights,
        kid_subsets=cfg.kid_subsets, kid_subset_size=subset, isc_splits=cfg.is_splits, rng_seed=cfg.seed,
        batch_size=cfg.batch_size, cuda=False, cache=False, verbose=False, save_cpu_ram=True,
    )
    keys = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
            "kid_std": "kernel_inception_distance_std", "is": "inception_score_mean", "is_std": "inception_score_std"}
    values = {k: float(out[v]) for k, v in keys.items() if v in out}
    parts = ["inception-v3-compat, uint8 in, TF1-bilinear resize to 299 inside the network, float32 features",
             "input1=fake, input2=real"]
    if "fid" in metrics:
        parts.append("FID: scipy sqrtm of float64 covariances")
    if "kid" in metrics:
        parts.append(f"KID: poly3 kernel in float32 (numpy), {cfg.kid_subsets} subsets of {subset}"
                     f"{cfg.subset_note(real, fake)} (it errors when kid_subset_size > n), "
                     f"np.random.RandomState({cfg.seed}).choice, population std")
    if "is" in metrics:
        parts.append(f"IS: logits_unbiased on fake, float64 softmax, {cfg.is_splits} splits, shuffle "
                     f"np.random.RandomState({cfg.seed}).permutation, population std")
    return BackendRow("torch-fidelity", package_version("torch-fidelity"), values, protocol="; ".join(parts))


def _torchmetrics(real: ImageSet, fake: ImageSet, cfg: _Config) -> BackendRow:
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    antialias = cfg.resize == "native"
    metrics, values = cfg.metrics, {}
    subset = cfg.clamped_subset_size(real, fake)
    # KID and IS build their NoTrainInceptionV3 without a weights path (a download) when given a layer name, so
    # they get the network as a module, built by torchmetrics' own class on the same file.
    net = lambda layer: NoTrainInceptionV3("inception-v3-compat", [layer], cfg.weights, antialias)  # noqa: E731
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        if "fid" in metrics:
            fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=cfg.weights,
                                           antialias=antialias)
            for batch in _batches(real.images, cfg.batch_size):
                fid.update(batch, real=True)
            for batch in _batches(fake.images, cfg.batch_size):
                fid.update(batch, real=False)
            values["fid"] = float(fid.compute())
        if "kid" in metrics:
            kid = KernelInceptionDistance(feature=net("2048"), subsets=cfg.kid_subsets, subset_size=subset)
            for batch in _batches(real.images, cfg.batch_size):
                kid.update(batch, real=True)
            for batch in _batches(fake.images, cfg.batch_size):
                kid.update(batch, real=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                mean, std = kid.compute()
            values["kid"], values["kid_std"] = float(mean), float(std)
        if "is" in metrics:
            isc = InceptionScore(feature=net("logits_unbiased"), splits=cfg.is_splits)
            for batch in _batches(fake.images, cfg.batch_size):
                isc.update(batch)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                mean, std = isc.compute()
            values["is"], values["is_std"] = float(mean), float(std)
    resize = ("F.interpolate bilinear antialias=True to 299 (its default)" if antialias else
              "TF1-bilinear resize to 299 (antialias=False, as ours)")
    parts = [f"NoTrainInceptionV3 (torch-fidelity's network), uint8 in, {resize}, float32 features"]
    if "fid" in metrics:
        parts.append("FID: float64 sums, eigvals of sigma1 @ sigma2, result cast to float32")
    if "kid" in metrics:
        parts.append(f"KID: poly3 kernel in float32, {cfg.kid_subsets} subsets of {subset}"
                     f"{cfg.subset_note(real, fake)} (it errors when subset_size > n), global torch.randperm "
                     f"after torch.manual_seed({cfg.seed}), population std")
    if "is" in metrics:
        parts.append(f"IS: logits_unbiased, float32 softmax, {cfg.is_splits} splits (torch.chunk), global "
                     f"torch.randperm after torch.manual_seed({cfg.seed}), Bessel-corrected std")
    return BackendRow("torchmetrics", package_version("torchmetrics"), values, protocol="; ".join(parts))


class _CleanFidExtractor(torch.nn.Module):
    """torch-fidelity's Inception ('2048') as a clean-fid ``custom_feat_extractor``; keeps every batch's output.

    clean-fid hands (B, 3, H, W) float32 images on the 0..255 scale: resized to 299 in ``clean`` mode (float,
    fed as is: torch-fidelity's uint8 check is lifted, its own resize is the identity at 299), or unresized
    uint8 values in ``legacy_tensorflow`` mode (rounded back to the exact uint8 they came from, so the network's
    TF1 resize runs as in ours).
    """

    def __init__(self, net: torch.nn.Module, quantize: bool) -> None:
        super().__init__()
        self.net, self.quantize = net, quantize
        self.outputs: list[torch.Tensor] = []

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) float 0..255 -> (B, 2048)
        if self.quantize:
            features = self.net(x.round().clamp(0, 255).to(torch.uint8))[0]
        else:
            import torch_fidelity.feature_extractor_inceptionv3 as tfi

            from bench.backbones.inception_v3_compat import _LOCK

            with _LOCK, mock.patch.object(tfi, "vassert", lambda *args, **kwargs: None):
                features = self.net(x)[0]
        self.outputs.append(features)
        return features


def _write_npy_folder(images: torch.Tensor, folder: str) -> None:
    """Each (C, H, W) uint8 image as an (H, W, 3) uint8 ``.npy`` file, which clean-fid reads exactly."""
    os.makedirs(folder)
    for i, image in enumerate(_rgb(images)):
        np.save(os.path.join(folder, f"{i:07d}.npy"), image.permute(1, 2, 0).contiguous().numpy())


def _clean_fid(real: ImageSet, fake: ImageSet, cfg: _Config, net: torch.nn.Module, tmp: str) -> BackendRow:
    from cleanfid import fid as cfid

    version = package_version("clean-fid")
    missing = {"is": "clean-fid has no Inception Score"} if "is" in cfg.metrics else {}
    wanted = [m for m in cfg.metrics if m != "is"]
    if not wanted:
        return BackendRow("clean-fid", version, not_applicable="clean-fid has no Inception Score", missing=missing)
    mode = "clean" if cfg.resize == "native" else "legacy_tensorflow"
    extractor = _CleanFidExtractor(net, quantize=mode == "legacy_tensorflow")
    real_dir, fake_dir = os.path.join(tmp, "clean-fid-real"), os.path.join(tmp, "clean-fid-fake")
    _write_npy_folder(real.images, real_dir)
    _write_npy_folder(fake.images, fake_dir)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # it prints when it regularizes a singular covariance product
        fid = cfid.compute_fid(real_dir, fake_dir, mode=mode, num_workers=0, batch_size=cfg.batch_size,
                               device=torch.device("cpu"), custom_feat_extractor=extractor, verbose=False)
    feats = torch.cat(extractor.outputs).numpy()  # (N_real + N_fake, 2048): fdir1 (real) first
    if len(feats) != len(real.images) + len(fake.images):
        raise RuntimeError(f"clean-fid extracted {len(feats)} features for {len(real.images)} + "
                           f"{len(fake.images)} images")
    real_f, fake_f = feats[:len(real.images)], feats[len(real.images):]
    values = {"fid": float(fid)} if "fid" in wanted else {}
    subset = cfg.clamped_subset_size(real, fake)
    if "kid" in wanted:
        saved = np.random.get_state()
        try:
            np.random.seed(cfg.seed)
            values["kid"] = float(cfid.kernel_distance(real_f, fake_f, cfg.kid_subsets, cfg.kid_subset_size))
        finally:
            np.random.set_state(saved)
        missing["kid_std"] = "clean-fid's kernel_distance returns the mean only"
    resize = ("mode=clean: PIL bicubic per channel in float32 to 299, not re-quantized (its default)"
              if mode == "clean" else "mode=legacy_tensorflow: unresized uint8 into the network's TF1-bilinear resize")
    parts = [f"torch-fidelity's Inception as custom_feat_extractor, images as exact uint8 .npy files, {resize}, "
             "float32 features"]
    if "fid" in wanted:
        singular = "singular" in printed.getvalue()
        note = " (it regularized a singular product: eps 1e-6 on the diagonals)" if singular else ""
        parts.append(f"FID: compute_fid, scipy sqrtm of float64 covariances{note}")
    if "kid" in wanted:
        parts.append(f"KID: kernel_distance on the same features (compute_kid takes no custom extractor), poly3 in "
                     f"float32, {cfg.kid_subsets} subsets of {subset} (it clamps), global np.random.choice after "
                     f"np.random.seed({cfg.seed}), mean only")
    return BackendRow("clean-fid", version, values, protocol="; ".join(parts), missing=missing)


def _ours_protocol(protocol: Any) -> str:
    if isinstance(protocol, Mapping):
        keys = ("backbone", "resize", "seed", "subsets", "subset_size", "splits")
        shown = {k: protocol[k] for k in keys if protocol.get(k) is not None}
        return ", ".join(f"{k}={v}" for k, v in shown.items())
    return "" if protocol is None else str(protocol)


def _rel_diff(value: float, ref: float) -> float:
    if ref == 0:
        return 0.0 if value == 0 else math.inf
    return (value - ref) / abs(ref)


def _verified_copy(weights_path: str, tmp: str) -> tuple[torch.nn.Module, str]:
    """torch-fidelity's network ('2048') loaded strictly from ``weights_path`` (read with weights_only=True), and
    the path of a tensors-only copy of the file, the one the third-party backends unpickle."""
    from bench.backbones.inception_v3_compat import _fetch_advice, build_torch_fidelity_inception
    from bench.weights_files import read_state_dict

    state = read_state_dict(weights_path, "inception-v3-compat", hint=_fetch_advice())
    net = build_torch_fidelity_inception(state, ("2048",), source=str(weights_path))  # raises on a wrong network
    copy = os.path.join(tmp, "inception-verified.pth")
    torch.save(dict(state), copy)
    return net, copy


def compare_backends(
    real: ImageSet,
    fake: ImageSet,
    metrics: list[str],
    weights_path: str,
    ours: Callable[[ImageSet, ImageSet, list[str]], Mapping[str, Any]],
    seed: int = 2020,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    batch_size: int = 64,
    backends: Sequence[str] = BACKENDS,
    third_party_resize: str = "native",
) -> list[BackendRow]:
    """Scores ``fake`` against ``real`` with ours and each third-party backend, all on ``weights_path``.

    Args:
        metrics: Some of ``fid``, ``kid``, ``is`` (IS is computed on ``fake``).
        weights_path: The Inception state-dict file every backend uses (ours must be built on it too).
        ours: Our evaluator, already configured with the same seed / subsets / splits; returns ``fid``,
            ``kid`` (mean), ``kid_std``, ``is`` (mean), ``is_std`` (those asked for) and optionally
            ``protocol`` (a string, or the protocol dict of :func:`bench.eval_images.evaluate_image_sets`).
        seed: Seed of every backend's KID subsets and IS shuffle (2020 is torch-fidelity's default, with which
            our IS shuffle equals its own).
        backends: Which of :data:`BACKENDS` to run (ours always runs: it is the reference).
        third_party_resize: ``native`` (each backend's own default resize) or ``tf1-bilinear`` (torchmetrics with
            ``antialias=False``, clean-fid in ``legacy_tensorflow`` mode: the resize of ours and torch-fidelity).

    Returns:
        Ours first, then one row per backend, in :data:`BACKENDS` order. A backend that is not installed or
        cannot compute any metric asked for has ``not_applicable`` set; one that raises has it set to the error.

    Raises:
        ValueError: An unknown metric, backend or resize, or ``ours`` returned no value for a metric asked for.
        InputError: ``weights_path`` is missing, unreadable or not torch-fidelity's Inception state dict.
    """
    unknown = sorted(set(metrics) - set(METRIC_KEYS))
    if unknown or not metrics:
        raise ValueError(f"--compare covers {', '.join(METRIC_KEYS)}; got {unknown or 'no metric'}")
    bad = sorted(set(backends) - set(BACKENDS))
    if bad:
        raise ValueError(f"unknown backend(s) {bad}; known: {', '.join(BACKENDS)}")
    if third_party_resize not in THIRD_PARTY_RESIZES:
        raise ValueError(f"third_party_resize must be one of {THIRD_PARTY_RESIZES}, got {third_party_resize!r}")
    metrics = [m for m in METRIC_KEYS if m in metrics]  # canonical order, no duplicates

    result = ours(real, fake, list(metrics))
    ref = {k: float(result[k]) for m in metrics for k in METRIC_KEYS[m] if result.get(k) is not None}
    lacking = [m for m in metrics if METRIC_KEYS[m][0] not in ref]
    if lacking:
        raise ValueError(f"our evaluator returned no value for {lacking} (keys: {sorted(result)})")
    rows = [BackendRow("ours", package_version(_DISTRIBUTIONS["ours"]), ref, {m: 0.0 for m in metrics},
                       _ours_protocol(result.get("protocol")))]

    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        net, copy = _verified_copy(weights_path, tmp)
        cfg = _Config(tuple(metrics), copy, seed, kid_subsets, kid_subset_size, is_splits, batch_size,
                      third_party_resize)
        runners: dict[str, Callable[[], BackendRow]] = {
            "torch-fidelity": lambda: _torch_fidelity(real, fake, cfg),
            "torchmetrics": lambda: _torchmetrics(real, fake, cfg),
            "clean-fid": lambda: _clean_fid(real, fake, cfg, net, tmp),
        }
        for name in (b for b in BACKENDS if b in backends):
            rows.append(_run_backend(name, runners[name]))
    for row in rows[1:]:
        row.rel_diff = {m: _rel_diff(row.values[m], ref[m]) for m in metrics if m in row.values}
    return rows


def _run_backend(name: str, run: Callable[[], BackendRow]) -> BackendRow:
    import importlib.util

    version = package_version(_DISTRIBUTIONS[name])
    if importlib.util.find_spec(_MODULES[name]) is None:
        return BackendRow(name, version, not_applicable=f"not installed (pip install {_DISTRIBUTIONS[name]})")
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - a third-party failure is a row of the report, not a crash
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return BackendRow(name, version, not_applicable=f"failed: {type(err).__name__}: {message}")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _fmt_rel(value: float | None) -> str:
    if value is None:
        return "—"
    return "0" if value == 0 else ("inf" if math.isinf(value) else f"{value:+.2e}")


def render_compare_table(rows: Sequence[BackendRow]) -> Table:
    """Rows = backends, columns = each metric's value (± std where the backend gives one) and its relative
    difference to ours, then the protocol (or why the backend is not applicable)."""
    metrics = [m for m in METRIC_KEYS if any(METRIC_KEYS[m][0] in r.values or m in r.missing for r in rows)]
    table = Table(title="Backend agreement (rel. diff = (value - ours) / |ours|)")
    table.add_column("backend")
    table.add_column("version")
    for metric in metrics:
        table.add_column(metric.upper(), justify="right")
        table.add_column(f"{metric.upper()} rel. diff", justify="right")
    table.add_column("protocol", overflow="fold")
    for row in rows:
        cells = [row.backend, row.version]
        for metric in metrics:
            key, *std_key = METRIC_KEYS[metric]
            if key in row.values:
                std = row.values.get(std_key[0]) if std_key else None
                cells += [_fmt(row.values[key]) + ("" if std is None else f" ± {std:.2g}"),
                          _fmt_rel(row.rel_diff.get(key))]
            else:
                cells += ["n/a", "—"]
        notes = [f"{m}: {why}" for m, why in row.missing.items()]
        protocol = f"not applicable: {row.not_applicable}" if row.not_applicable else row.protocol
        cells.append("; ".join([protocol, *notes]) if notes and not row.not_applicable else protocol)
        table.add_row(*cells)
    return table


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def compare_rows_json(rows: Sequence[BackendRow]) -> dict[str, Any]:
    """The rows for ``--json``: ``{"reference": "ours", "rows": [...]}``, one dict per :class:`BackendRow`;
    a non-finite relative difference (ours 0, theirs not) is null."""
    out = []
    for row in rows:
        data = dataclasses.asdict(row)
        data["rel_diff"] = {k: _finite_or_none(v) for k, v in row.rel_diff.items()}
        out.append(data)
    return {"reference": rows[0].backend if rows else None, "rows": out}


def eval_images_adapter(
    backbone: Any, seed: int = 2020, kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
    batch_size: int = 64,
) -> Callable[[ImageSet, ImageSet, list[str]], dict[str, Any]]:
    """``ours`` for :func:`compare_backends`: :func:`bench.eval_images.evaluate_image_sets` (the evaluator of
    ``bench run``) on ``backbone`` (build it on the same weights file); its values are keyed ``fid``, ``kid``,
    ``kid_std``, ``is``, ``is_std`` already."""
    from bench.eval_images import evaluate_image_sets

    def run(real: ImageSet, fake: ImageSet, metrics: list[str]) -> dict[str, Any]:
        out = evaluate_image_sets(real, fake, metrics, backbone, seed=seed, batch_size=batch_size,
                                  kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_splits=is_splits)
        return {k: v for k, v in out.items() if k != "rows"}

    return run
