"""Shared test setup: never reach the network, and keep caches inside pytest's tmp dirs."""

import os

# Set before anything imports huggingface_hub / datasets (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """Points ``$BENCH_CACHE_DIR`` (the real-feature cache) at a fresh temporary folder and returns it."""
    cache = tmp_path / "bench-cache"
    cache.mkdir()
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """``Trainer(deterministic=...)`` and the runner flip a process-wide torch flag; put it back after every test."""
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture(scope="session")
def inception_weights_file(tmp_path_factory):
    """A random-init state dict of torch-fidelity's Inception, saved to a file: exercises the real weight-loading
    path of ``inception-v3-compat`` without the (unreachable) download."""
    from unittest import mock

    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    torch.manual_seed(0)
    with (
        mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    # PyTorch's default conv init shrinks the signal ~6x per layer, so deep features of a default-init network
    # do not depend on the image; He init and near-identity BatchNorm (non-trivial running statistics, so the
    # eval-mode BN with eps 1e-3 is exercised) keep them image-dependent.
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.05)
            module.running_var.uniform_(0.8, 1.25)
            module.weight.data.uniform_(0.8, 1.2)
            module.bias.data.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the fuzz harness (tests/fuzz) for many more examples, with fresh random seeds")


def pytest_configure(config):
    # read by tests/fuzz at import time (Hypothesis settings are fixed when the test module is imported)
    if config.getoption("--fuzz-long"):
        os.environ["BENCH_FUZZ_LONG"] = "1"


@pytest.fixture
def one_thread():
    """Runs the test on one torch thread (bit-stable float sums), restoring the count afterwards; modules opt in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
