"""torch-fidelity's TF-ported Inception-v3 (``FeatureExtractorInceptionV3``): the paper-standard network for
FID / KID / Inception Score.

The network is torch-fidelity's own module (same layers, same TF1-compatible bilinear resize to 299, same
``(x - 128) / 128`` scaling), so features are those of ``torch_fidelity.calculate_metrics``. Only the weight
loading differs: torch-fidelity calls ``torch.load(path, weights_only=False)`` on a local file, which can run
arbitrary pickled code; here the state dict is always read with ``torch.load(..., weights_only=True)`` and handed
to the module.
"""

from __future__ import annotations

import os
import threading
import urllib.error
from collections.abc import Mapping
from unittest import mock

import torch

from bench.backbones.base import BackboneWeightsError, FeatureBackbone, check_uint8_images
from bench.backbones.registry import BACKBONES
from bench.backbones.resize import check_resize_mode, resize_label, resize_uint8
from bench.hashing import file_sha256
from bench.weights_files import file_problem, load_into, read_state_dict

WEIGHTS_ENV = "BENCH_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
_LOCK = threading.Lock()  # serializes the temporary patch of torch-fidelity's module global


def weights_url() -> str:
    """The URL torch-fidelity downloads its converted TF Inception weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def weights_file_name() -> str:
    """Base name of the weights file (``weights-inception-2015-12-05-6726825d.pth``), as torch.hub caches it."""
    return os.path.basename(weights_url())


def cached_weights_path() -> str:
    """Where torch.hub caches the downloaded file: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", weights_file_name())


def _fetch_advice() -> str:
    return (
        f"Download {weights_file_name()} (torch-fidelity's conversion of the TF "
        f"inception-2015-12-05 graph; pytorch-fid's pt_inception-2015-12-05-6726825d.pth is accepted only if its "
        f"keys match, the load is strict) from "
        f"{weights_url()} on a machine with network, and point {WEIGHTS_ENV}=/path/to/{weights_file_name()} at it "
        f"(or pass --backbone-weights FILE), or put it at {cached_weights_path()}."
    )


def _missing_weights_message(reason: str) -> str:
    return f"inception-v3-compat: {reason}. {_fetch_advice()}"


def resolve_weights_path(weights_path: str | None = None) -> str:
    """The weights file: ``weights_path``, else ``$BENCH_INCEPTION_WEIGHTS``, else torch-fidelity's download.

    The download goes to torch.hub's cache (as torch-fidelity's own ``load_state_dict_from_url`` does) and is
    skipped when the cached file exists.

    Raises:
        BackboneWeightsError: the given file does not exist (or is a directory), or the download failed (e.g. no
            network).
    """
    path = weights_path or os.environ.get(WEIGHTS_ENV) or None
    if path is not None:
        problem = file_problem(path)
        if problem is not None:
            raise BackboneWeightsError(_missing_weights_message(f"weights file {path} {problem}"))
        return path
    cached = cached_weights_path()
    if not os.path.isfile(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        try:
            torch.hub.download_url_to_file(weights_url(), cached, hash_prefix=None, progress=False)
        except (urllib.error.URLError, OSError) as err:  # URLError/HTTPError/ConnectionError are OSErrors
            reason = f"weights not found and the download failed ({err})"
            raise BackboneWeightsError(_missing_weights_message(reason)) from err
    return cached


def build_torch_fidelity_inception(
    state_dict: Mapping[str, torch.Tensor],
    features_list: tuple[str, ...] = ("2048", "logits_unbiased"),
    source: str = "(in memory)",
) -> torch.nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` with the given (already safely loaded) state dict.

    Its constructor always loads weights itself, from a path with ``weights_only=False`` or from the URL; the
    module-level ``load_state_dict_from_url`` it calls for the latter is replaced, for the duration of the call
    only, by a function returning nothing to load (and the module's own ``load_state_dict`` by a no-op), so
    nothing is unpickled by torch-fidelity and nothing is downloaded. ``state_dict`` is then loaded strictly by
    :func:`bench.weights_files.load_into`, so a wrong file fails with one line naming ``source`` (its path).

    Raises:
        BackboneWeightsError: ``state_dict`` is not the state dict of this network (keys or shapes differ).
    """
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with (
        _LOCK,
        mock.patch.object(tfi, "load_state_dict_from_url", lambda *args, **kwargs: {}),
        mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None),
    ):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", list(features_list))
    # After the patch is lifted: load_into calls the real (inherited) nn.Module.load_state_dict, strict. The
    # constructor's later steps (cast to its float32 internal dtype, requires_grad off) are unaffected by the
    # order: load_state_dict copies into the existing parameters.
    load_into(
        net, state_dict, source, "inception-v3-compat", target="torch-fidelity's FeatureExtractorInceptionV3",
        hint=_fetch_advice(),
    )
    return net


@BACKBONES.register("inception-v3-compat")
class InceptionV3Compat(FeatureBackbone):
    """torch-fidelity's Inception-v3: 2048-d pool features ('2048') and 1008 unbiased logits ('logits_unbiased').

    Preprocessing by default is the network's own and part of the FID protocol: uint8 → float, TF1-compatible
    bilinear resize to 299×299 (torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``),
    ``(x - 128) / 128``. Grayscale is repeated to 3 channels. Float32 internally, as torch-fidelity's default.
    With another ``resize_mode`` (e.g. ``clean``), images are resized to 299 by that mode first and enter the
    network as float, where its own resize is then the identity.

    Args:
        weights_path: A state-dict file; default ``$BENCH_INCEPTION_WEIGHTS``, else torch-fidelity's download
            (cached by torch.hub). Always loaded with ``torch.load(..., weights_only=True)``.
        size: Must be 299: the network was trained at 299.
        resize_mode: One of :data:`bench.backbones.resize.RESIZE_MODES`; ``tf1-bilinear`` is the paper standard.

    Raises:
        ValueError: ``size`` is not 299, or an unknown ``resize_mode``.
        BackboneWeightsError: no weights file and the download is impossible, or the file is unreadable (corrupt,
            truncated, pickled objects), not a state dict, or not one of this network; one line naming the file.
    """

    num_features = 2048
    num_logits = 1008

    def __init__(self, weights_path: str | None = None, size: int = INPUT_SIZE, resize_mode: str = "tf1-bilinear") -> None:
        super().__init__()
        if size != INPUT_SIZE:
            raise ValueError(
                f"inception-v3-compat takes {INPUT_SIZE}×{INPUT_SIZE} inputs (the resize is part of the FID "
                f"protocol); size={size} is not supported"
            )
        check_resize_mode(resize_mode)
        self.size, self.resize_mode = size, resize_mode
        self.resize = resize_label(resize_mode, size)
        path = resolve_weights_path(weights_path)
        state = read_state_dict(path, "inception-v3-compat", hint=_fetch_advice())
        # Both layers in one pass (the extra 2048×1008 matmul is negligible); the module is never mutated per call.
        self.net = build_torch_fidelity_inception(state, ("2048", "logits_unbiased"), source=path)
        self.weights_path = path
        self.weights_sha256 = file_sha256(os.path.abspath(path))
        self.requires_grad_(False)
        self.eval()

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1|3, H, W) uint8 -> features (B, 2048) and logits (B, 1008), float32."""
        check_uint8_images(images)
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # (B, 3, H, W)
        if self.resize_mode == "tf1-bilinear":
            return self.net(rgb)  # torch-fidelity's own path, bit for bit
        x = resize_uint8(rgb, self.size, self.resize_mode)  # (B, 3, 299, 299) float 0..255
        # torch-fidelity's forward asserts uint8 input; the float 299-px input must not be re-quantized (clean-fid
        # feeds float), and its internal TF1 resize is the identity at 299. So only that assertion is lifted.
        import torch_fidelity.feature_extractor_inceptionv3 as tfi

        with _LOCK, mock.patch.object(tfi, "vassert", lambda *args, **kwargs: None):
            return self.net(x)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 2048)
        return self._run(images)[0]

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) uint8 -> (B, 1008)
        """torch-fidelity's 'logits_unbiased' (fc without bias), the layer its Inception Score uses."""
        return self.features_and_logits(images)[1]

    @torch.inference_mode()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(images)  # (B, 2048), (B, 1008) float32
