"""datamodules.hf_images (mnist, cifar10): loading a local copy in the hub's parquet layout, and the offline error."""

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.base import DataUnavailableError
from datamodules.hf_images import CIFAR10DataModule, MNISTDataModule, load_hf_image_splits

N_TRAIN, N_TEST = 30, 8


def write_hub_parquet(root: Path, config: str, image_column: str, images: dict[str, np.ndarray]) -> dict:
    """Writes ``<root>/<config>/<split>-00000-of-00001.parquet`` like the hub (PNG image column + int label).

    Returns ``{split: (images, labels)}`` as written.
    """
    import datasets
    from PIL import Image

    written = {}
    for split, array in images.items():
        labels = [(7 * i + 3) % 10 for i in range(len(array))]
        pil = [Image.fromarray(a if a.shape[-1] != 1 else a[..., 0]) for a in array]
        ds = datasets.Dataset.from_dict({image_column: pil, "label": labels}).cast_column(image_column, datasets.Image())
        (root / config).mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
        written[split] = (array, np.asarray(labels))
    return written


@pytest.fixture(autouse=True)
def isolated_hf_cache(tmp_path, monkeypatch):
    """Keeps `datasets`' arrow cache inside the test's tmp dir, and guarantees offline mode."""
    import datasets

    assert datasets.config.HF_HUB_OFFLINE, "tests must run with HF_HUB_OFFLINE=1 (see tests/conftest.py)"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    for var in ("MNIST_DIR", "CIFAR10_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {s: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for s, n in (("train", N_TRAIN), ("test", N_TEST))}
    root = tmp_path / "ylecun-mnist"
    return root, write_hub_parquet(root, "mnist", "image", arrays)


@pytest.fixture
def cifar_dir(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", N_TRAIN), ("test", N_TEST))}
    root = tmp_path / "uoft-cs-cifar10"
    return root, write_hub_parquet(root, "plain_text", "img", arrays)


def expected(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → the float (N, C, H, W) in [0, 1] the datamodule should produce."""
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(255.0)


def test_load_hf_image_splits_raw(mnist_dir):
    """The loader returns uint8 (N, H, W, 1) arrays equal to what was written, labels in order."""
    root, written = mnist_dir
    raw = load_hf_image_splits("ylecun/mnist", str(root), "image", "label", channels=1)
    for split in ("train", "test"):
        images, labels = raw[split]
        assert images.dtype == np.uint8 and images.shape == written[split][0].shape
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])


def test_mnist_local_copy(mnist_dir):
    """MNIST from data_dir: 1x28x28 in [0, 1], pixels exactly uint8/255, val = the end of train."""
    root, written = mnist_dir
    dm = MNISTDataModule(data_dir=str(root), val_size=2)
    train, val, test = (dm.split_tensors(s) for s in ("train", "val", "test"))
    assert train["image"].shape == (N_TRAIN - 2, 1, 28, 28) and val["image"].shape == (2, 1, 28, 28)
    assert test["image"].shape == (N_TEST, 1, 28, 28)
    all_train = expected(written["train"][0])
    assert torch.equal(train["image"], all_train[:-2]) and torch.equal(val["image"], all_train[-2:])
    assert torch.equal(test["image"], expected(written["test"][0]))
    assert torch.equal(train["image"].mul(255).round().to(torch.uint8), torch.from_numpy(written["train"][0][:-2]).permute(0, 3, 1, 2))
    assert 0 <= train["image"].min() and train["image"].max() <= 1
    assert train["label"].tolist() == written["train"][1][:-2].tolist() and train["label"].dtype == torch.long
    assert dm.data_spec().image_shape == (1, 28, 28) and dm.data_spec().num_classes == 10


def test_cifar10_local_copy(cifar_dir):
    """CIFAR-10 from data_dir (column ``img``): RGB 3x32x32, channel order kept, pixels exact."""
    root, written = cifar_dir
    dm = CIFAR10DataModule(data_dir=str(root), val_size=3)
    train, val, test = (dm.split_tensors(s) for s in ("train", "val", "test"))
    assert train["image"].shape == (N_TRAIN - 3, 3, 32, 32) and val["image"].shape == (3, 3, 32, 32)
    assert torch.equal(torch.cat([train["image"], val["image"]]), expected(written["train"][0]))
    assert torch.equal(test["image"], expected(written["test"][0]))
    assert test["label"].tolist() == written["test"][1].tolist()
    assert dm.data_spec().image_shape == (3, 32, 32)


def test_val_size_clamped_to_a_tenth(mnist_dir):
    """The default val_size (5000) is clamped to a tenth of the (tiny) train split."""
    root, _ = mnist_dir
    dm = MNISTDataModule(data_dir=str(root))
    assert len(dm.split_tensors("val")["label"]) == N_TRAIN // 10
    assert len(dm.split_tensors("train")["label"]) == N_TRAIN - N_TRAIN // 10


def test_resize(cifar_dir):
    """image_size resizes every split and the spec reports it."""
    root, _ = cifar_dir
    dm = CIFAR10DataModule(data_dir=str(root), image_size=16, val_size=3)
    assert dm.split_tensors("test")["image"].shape == (N_TEST, 3, 16, 16)
    assert dm.data_spec().image_shape == (3, 16, 16)


def test_env_var_folder(mnist_dir, monkeypatch):
    """$MNIST_DIR is used when data_dir is not given."""
    root, _ = mnist_dir
    monkeypatch.setenv("MNIST_DIR", str(root))
    assert len(MNISTDataModule(val_size=2).split_tensors("test")["label"]) == N_TEST


def test_folder_without_parquet_raises(tmp_path, mnist_dir):
    """An empty folder, or one with train files but no test files, raises DataUnavailableError."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError, match="train-\\*.parquet"):
        MNISTDataModule(data_dir=str(empty)).setup()
    root, _ = mnist_dir
    (root / "mnist" / "test-00000-of-00001.parquet").unlink()
    with pytest.raises(DataUnavailableError, match="test=0"):
        MNISTDataModule(data_dir=str(root)).setup()


def test_wrong_columns_raise(mnist_dir):
    """A local copy without the expected image column raises DataUnavailableError naming the column."""
    root, _ = mnist_dir
    with pytest.raises(DataUnavailableError, match="img"):
        CIFAR10DataModule(data_dir=str(root)).setup()  # MNIST files have `image`, not `img`


@pytest.mark.parametrize("cls", [MNISTDataModule, CIFAR10DataModule])
def test_offline_hub_raises_data_unavailable(cls):
    """With no data_dir and the hub unreachable (offline mode), the error is DataUnavailableError with a fix."""
    with pytest.raises(DataUnavailableError) as info:
        cls().setup()
    message = str(info.value)
    assert cls.hub_id in message and "data_dir" in message


def test_hub_failure_is_wrapped(monkeypatch):
    """Whatever `datasets.load_dataset` raises for the hub id becomes DataUnavailableError, cause kept."""
    import datasets

    def fail(*args, **kwargs):
        raise OSError("simulated network failure")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataUnavailableError, match="simulated network failure") as info:
        load_hf_image_splits("ylecun/mnist", None, "image", "label", channels=1)
    assert isinstance(info.value.__cause__, OSError)
