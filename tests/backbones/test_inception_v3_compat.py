"""bench.backbones.inception_v3_compat: torch-fidelity's Inception-v3 with a random-init weights file.

Every comparison is against torch-fidelity's own ``FeatureExtractorInceptionV3`` / ``calculate_metrics`` loading
the same file, so the real (downloaded) weights are never needed and nothing touches the network.
"""

import hashlib
import urllib.error
from pathlib import Path

import pytest
import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tfi
from torch_fidelity.metric_kid import kid_features_to_metric
from torch.utils.data import Dataset

from bench.backbones import BACKBONES, BackboneWeightsError, FeatureBackbone
from bench.backbones.inception_v3_compat import WEIGHTS_ENV, InceptionV3Compat
from bench.metrics.fid import FID
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kernel_distance
from tests.backbones.pretrained_photos import PretrainedPhotoTests

FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:  # uint8 (B, C, H, W)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def weights_file(inception_weights_file) -> Path:
    return inception_weights_file  # tests/conftest.py: a random-init torch-fidelity state dict saved to a file


@pytest.fixture(scope="module")
def backbone(weights_file) -> InceptionV3Compat:
    return InceptionV3Compat(weights_path=str(weights_file))


@pytest.fixture(scope="module")
def reference(weights_file) -> torch.nn.Module:
    """torch-fidelity's own extractor on the same file (it loads it itself)."""
    return tfi.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights_file)
    )


def test_registered_and_loads_weights_path(backbone, weights_file):
    """weights_path loads through torch.load(weights_only=True); sha256 is that of the file; attributes are set."""
    assert BACKBONES.get("inception-v3-compat") is InceptionV3Compat and isinstance(backbone, FeatureBackbone)
    assert backbone.weights_sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert backbone.num_features == 2048 and backbone.resize == "tf1-bilinear-299"
    backbone.train()
    assert not backbone.training and not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())


def test_loads_weights_from_env(weights_file, monkeypatch):
    """$BENCH_INCEPTION_WEIGHTS is used when no weights_path is given, loaded with weights_only=True."""
    monkeypatch.setenv(WEIGHTS_ENV, str(weights_file))
    calls = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    net = InceptionV3Compat()
    assert calls == [True]
    assert net.weights_sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()


@pytest.mark.parametrize("size", [32, 299])
def test_matches_torch_fidelity(backbone, reference, size):
    """Features == torch-fidelity's '2048', logits == its 'logits_unbiased', at 32 px and at the native 299 px."""
    images = _images((2, 3, size, size), seed=size)
    ref_features, ref_logits = reference(images)
    features = backbone(images)
    logits = backbone.logits(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32 and logits.shape == (2, 1008)
    assert torch.isfinite(features).all() and not torch.allclose(features[0], features[1])
    torch.testing.assert_close(features, ref_features, rtol=1e-5, atol=0)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=0)


def test_grayscale_and_float_input(backbone, reference):
    """Grayscale is repeated to 3 channels; float images are refused."""
    gray = _images((2, 1, 32, 32), seed=1)
    ref_features, _ = reference(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(backbone(gray), ref_features, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="uint8"):
        backbone(torch.rand(2, 3, 32, 32))


def test_clean_resize_mode(backbone, weights_file):
    """``clean``: PIL-bicubic to 299 in float, then the same network. At 299 px it equals the default path (both
    resizes are the identity there); at 32 px it differs from it, and the row label says which was used."""
    clean = InceptionV3Compat(weights_path=str(weights_file), resize_mode="clean")
    assert (backbone.resize, clean.resize) == ("tf1-bilinear-299", "clean-299")
    native = _images((2, 3, 299, 299), seed=3)
    torch.testing.assert_close(clean(native), backbone(native), rtol=1e-6, atol=0)
    small = _images((2, 3, 32, 32), seed=4)
    assert not torch.allclose(clean(small), backbone(small), rtol=1e-3)
    with pytest.raises(ValueError, match="uint8"):  # torch-fidelity's own input check is only lifted internally
        clean(torch.rand(2, 3, 32, 32))


def test_size_must_be_299(weights_file):
    with pytest.raises(ValueError, match="299"):
        InceptionV3Compat(weights_path=str(weights_file), size=224)


def test_missing_weights_without_network(tmp_path, monkeypatch):
    """No file, no env var, download impossible → BackboneWeightsError naming the file, the URL and the env var."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # empty hub cache

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # belt and braces: nothing reaches the network
    with pytest.raises(BackboneWeightsError) as info:
        InceptionV3Compat()
    message = str(info.value)
    assert FILE_NAME in message and WEIGHTS_ENV in message and tfi.URL_INCEPTION_V3 in message
    assert "--backbone-weights" in message
    with pytest.raises(BackboneWeightsError, match="does not exist"):
        InceptionV3Compat(weights_path=str(tmp_path / "nope.pth"))


class _TensorDataset(Dataset):
    """uint8 (3, H, W) images, the input torch_fidelity.calculate_metrics accepts."""

    def __init__(self, images: torch.Tensor) -> None:  # images (N, 3, H, W) uint8
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:  # (3, H, W) uint8
        return self.images[i]


def test_fid_kid_is_match_torch_fidelity(backbone, weights_file):
    """Our FID / KID / IS on this backbone's outputs == torch_fidelity.calculate_metrics on the same images."""
    n = 20  # per side; Inception at 299 px costs ~0.15 s per image on 2 CPU cores, and both sides run twice
    real = _images((n, 3, 32, 32), seed=10)
    # A shifted distribution, so that FID is clearly non-zero.
    fake = (_images((n, 3, 32, 32), seed=11).float() * 0.6).to(torch.uint8)
    expected = torch_fidelity.calculate_metrics(
        input1=_TensorDataset(real),
        input2=_TensorDataset(fake),
        fid=True,
        kid=True,
        isc=True,
        isc_splits=2,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights_file),
        kid_subsets=1,
        kid_subset_size=n,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    real_features, fake_features = backbone(real), backbone(fake)  # (n, 2048) each
    fid = FID(num_features=2048)
    fid.update(real_features, real=True)
    fid.update(fake_features, real=False)
    with pytest.warns(UserWarning, match="rank-deficient"):
        ours_fid = fid.compute().item()
    ours_kid, _ = kernel_distance(real_features, fake_features, subsets=1, subset_size=n)
    assert ours_fid > 0
    assert ours_fid == pytest.approx(expected["frechet_inception_distance"], rel=1e-5)
    # KID: torch-fidelity evaluates the cubic kernel in float32 (numpy on the float32 features), we in float64;
    # on these images that alone moves the value by ~1e-5 relative (measured 9.7e-6), so the end-to-end check
    # uses rel 1e-4, and the formula itself is checked exactly against torch-fidelity fed float64 features.
    assert ours_kid.item() == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-4)
    exact = kid_features_to_metric(
        real_features.double(), fake_features.double(), kid_subsets=1, kid_subset_size=n, verbose=False, rng_seed=0
    )
    assert ours_kid.item() == pytest.approx(exact["kernel_inception_distance_mean"], rel=1e-12)
    # IS is computed by torch-fidelity on input1, with its default shuffle seed 2020.
    is_mean, is_std = inception_score(backbone.logits(real), splits=2, seed=2020)
    assert is_mean == pytest.approx(expected["inception_score_mean"], rel=1e-6)
    assert is_std == pytest.approx(expected["inception_score_std"], rel=1e-6, abs=1e-9)


def test_torchmetrics_fid_difference_is_its_antialiased_resize(backbone, weights_file):
    """torchmetrics' FrechetInceptionDistance (same torch-fidelity network, same weights file) resizes with
    ``F.interpolate(bilinear, antialias=True)`` by default instead of the TF1-compatible bilinear. With
    ``antialias=False`` it equals ours; with its default it differs whenever the images are not already 299 px
    (at 299 px both resizes are the identity). Measured with these random weights, 20 vs 20 images at 32 px:
    4.5e-4 relative with antialias, 9e-9 without."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = _images((12, 3, 32, 32), seed=10)
    fake = (_images((12, 3, 32, 32), seed=11).float() * 0.6).to(torch.uint8)
    ours = FID(num_features=2048)
    ours.update(backbone(real), real=True)
    ours.update(backbone(fake), real=False)
    with pytest.warns(UserWarning, match="rank-deficient"):
        value = ours.compute().item()
    theirs = {}
    for antialias in (False, True):
        tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights_file), antialias=antialias)
        tm.update(real, real=True)
        tm.update(fake, real=False)
        theirs[antialias] = tm.compute().item()
    assert theirs[False] == pytest.approx(value, rel=1e-6)
    assert abs(theirs[True] - value) / value > 1e-4  # the default antialiased resize moves the value


def _real_inception_weights() -> str | None:
    """The real torch-fidelity Inception weights where this machine has them ($BENCH_INCEPTION_WEIGHTS or the
    torch.hub cache), else None: they cannot be downloaded here."""
    import os

    from bench.backbones.inception_v3_compat import cached_weights_path

    for path in (os.environ.get(WEIGHTS_ENV), cached_weights_path()):
        if path and Path(path).is_file():
            return path
    return None


class TestInceptionPhotos(PretrainedPhotoTests):
    """The photo check on the real TF-Inception weights, where present. Its 1008-way head follows the TF graph's
    own label map (not the sorted-synset order), which no installed package ships, so the class check skips with
    that reason; the penultimate-activation check runs."""

    input_size = 299

    @pytest.fixture(scope="class")
    def pretrained_backbone(self):
        path = _real_inception_weights()
        if path is None:
            pytest.skip(f"real Inception weights absent (set {WEIGHTS_ENV}=/path/to/{FILE_NAME})")
        return InceptionV3Compat(weights_path=path)

    def class_names(self, backbone):
        return None

    def head(self, backbone, features):
        return features.mm(backbone.net.fc.weight.T)  # 'logits_unbiased': the fc layer without its bias

    def reference_logits(self, backbone, images):
        ref = tfi.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["logits_unbiased"], feature_extractor_weights_path=backbone.weights_path
        ).eval()
        with torch.no_grad():
            return ref(images)[0]
