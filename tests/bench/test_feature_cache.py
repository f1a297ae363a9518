"""bench.features: the real-feature cache is content-addressed and verified; a file that fails any check is
reported in one warning line, recomputed and rewritten, never used."""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

import pytest
import torch

from bench.features import (
    CACHE_FORMAT,
    CacheVerificationWarning,
    RealCacheKey,
    cached_real_features,
    images_sha256,
    real_cache_key,
    tensor_sha256,
)


class _FakeBackbone:
    registry_name = "fake-net"
    weights_sha256 = "ab" * 32
    resize = "bilinear-8"
    forward_version = "3"


N, D = 50, 6


@pytest.fixture
def images() -> torch.Tensor:  # (N, 1, 8, 8) float in [0, 1]
    return torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def fresh() -> torch.Tensor:  # what the backbone computes: (N, D), not zeros
    return torch.randn(N, D, generator=torch.Generator().manual_seed(1)) + 3.0


@pytest.fixture
def key() -> RealCacheKey:
    return real_cache_key("digits-0123abcd", "test", _FakeBackbone())


class _Compute:
    """A compute function that counts its calls."""

    def __init__(self, feats: torch.Tensor) -> None:
        self.feats, self.calls = feats, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.feats.clone()


def _fill(key: str, fresh: torch.Tensor, cache: Path, images: torch.Tensor) -> Path:
    """A good cache file, as a first run writes it; returns its path."""
    cached_real_features(key, _Compute(fresh), cache, source_images=images)
    return cache / f"{key}.pt"


def _recomputed(key: str, fresh: torch.Tensor, cache: Path, images: torch.Tensor | None, reason: str) -> str:
    """Reads through the cache expecting verification to fail: recomputed, equal to ``fresh``, one warning line
    holding ``reason``, and the rewritten file is then used. Returns the warning."""
    compute = _Compute(fresh)
    with pytest.warns(CacheVerificationWarning) as record:
        feats, hit = cached_real_features(key, compute, cache, source_images=images)
    assert not hit and compute.calls == 1 and torch.equal(feats, fresh)
    assert len(record) == 1
    message = str(record[0].message)
    path = cache / f"{key}.pt"
    assert message.startswith(f"cache file {path} failed verification (") and message.endswith("); recomputing")
    assert "\n" not in message and reason in message, message
    again = _Compute(fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file verifies
        feats2, hit2 = cached_real_features(key, again, cache, source_images=images)
    assert hit2 and again.calls == 0 and torch.equal(feats2, fresh)
    return message


def test_good_file_is_used_without_computing(key, fresh, tmp_path, images) -> None:
    _fill(key, fresh, tmp_path, images)
    compute = _Compute(fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feats, hit = cached_real_features(key, compute, tmp_path, source_images=images)
    assert hit and compute.calls == 0 and torch.equal(feats, fresh)


def test_file_format_is_the_documented_record(key, fresh, tmp_path, images) -> None:
    payload = torch.load(_fill(key, fresh, tmp_path, images), weights_only=True)
    assert payload["format"] == CACHE_FORMAT and payload["version"] == 2
    record = payload["record"]
    assert record["key"] == str(key) and record["n"] == N and record["shape"] == [N, D]
    assert record["dtype"] == "float32" and record["features_sha256"] == tensor_sha256(fresh)
    assert record["source_sha256"] == images_sha256(images)
    assert record["parts"] == {"datamodule": "digits-0123abcd", "split": "test", "backbone": "fake-net",
                               "weights_sha256": "ab" * 32, "resize": "bilinear-8", "forward_version": "3"}
    assert torch.equal(payload["features"], fresh)


def test_planted_zeros_of_the_right_shape_are_recomputed(key, fresh, tmp_path, images) -> None:
    """A bare zeros tensor in place of the file (the old format, or a planted one) would give a wrong FID."""
    _fill(key, fresh, tmp_path, images)
    torch.save(torch.zeros(N, D), tmp_path / f"{key}.pt")
    _recomputed(key, fresh, tmp_path, images, "bare tensor")


def test_zeros_inside_a_good_record_fail_the_checksum(key, fresh, tmp_path, images) -> None:
    path = _fill(key, fresh, tmp_path, images)
    payload = torch.load(path, weights_only=True)
    payload["features"] = torch.zeros(N, D)
    torch.save(payload, path)
    _recomputed(key, fresh, tmp_path, images, "sha256 differs")


def test_forty_rows_are_recomputed(key, fresh, tmp_path, images) -> None:
    torch.save(fresh[:40].clone(), tmp_path / f"{key}.pt")
    _recomputed(key, fresh, tmp_path, images, "bare tensor")


def test_forty_rows_with_a_consistent_record_fail_the_expected_count(key, fresh, tmp_path, images) -> None:
    """A self-consistent file of 40 rows (record, checksum and all) is refused where the source has 50 images."""
    cached_real_features(key, _Compute(fresh[:40]), tmp_path)  # written without a source check
    _recomputed(key, fresh, tmp_path, images, "40 rows but the source has 50 images")


def test_random_bytes_are_recomputed_and_the_path_named(key, fresh, tmp_path, images) -> None:
    (tmp_path / f"{key}.pt").write_bytes(random.Random(0).randbytes(2000))
    message = _recomputed(key, fresh, tmp_path, images, "cannot be read")
    assert str(tmp_path / f"{key}.pt") in message


def test_truncated_file_is_recomputed(key, fresh, tmp_path, images) -> None:
    path = _fill(key, fresh, tmp_path, images)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _recomputed(key, fresh, tmp_path, images, "cannot be read")


def test_file_of_another_key_is_recomputed(key, fresh, tmp_path, images) -> None:
    other = real_cache_key("digits-0123abcd", "train", _FakeBackbone())
    (tmp_path / f"{key}.pt").write_bytes(_fill(other, fresh, tmp_path, images).read_bytes())
    _recomputed(key, fresh, tmp_path, images, "recorded for key")


def test_other_weights_with_the_same_short_hash_are_recomputed(key, fresh, tmp_path, images) -> None:
    """The file name carries 12 hex digits of the weights' sha256; the record carries all 64."""
    backbone = _FakeBackbone()
    backbone.weights_sha256 = "ab" * 6 + "cd" * 26
    twin = real_cache_key("digits-0123abcd", "test", backbone)
    assert str(twin) == str(key)
    _fill(twin, fresh, tmp_path, images)
    _recomputed(key, fresh, tmp_path, images, "recorded weights_sha256")


def test_other_source_images_are_recomputed(key, fresh, tmp_path, images) -> None:
    _fill(key, fresh, tmp_path, images)
    changed = images.clone()
    changed[0, 0, 0, 0] = 1.0 - changed[0, 0, 0, 0]
    _recomputed(key, fresh, tmp_path, changed, "source images sha256")


def test_foreign_pickle_and_dict_are_recomputed(key, fresh, tmp_path, images) -> None:
    path = tmp_path / f"{key}.pt"
    path.write_bytes(pickle.dumps({"x": 1}))
    _recomputed(key, fresh, tmp_path, images, "cannot be read")  # not a torch.save file
    torch.save({"features": fresh}, path)
    _recomputed(key, fresh, tmp_path, images, "not a real-feature cache file")


def test_plain_string_keys_and_no_source(fresh, tmp_path) -> None:
    """Any string is a key (parts unknown: the string is checked); without source images n is not checked."""
    compute = _Compute(fresh)
    feats, hit = cached_real_features("some-key", compute, tmp_path)
    assert not hit and compute.calls == 1 and torch.equal(feats, fresh)
    assert torch.load(tmp_path / "some-key.pt", weights_only=True)["record"]["parts"] == {}
    feats, hit = cached_real_features("some-key", _Compute(fresh), tmp_path)
    assert hit and torch.equal(feats, fresh)


def test_compute_returning_the_wrong_count_writes_nothing(key, fresh, tmp_path, images) -> None:
    with pytest.raises(RuntimeError, match="computed \\[40, 6\\]"):
        cached_real_features(key, _Compute(fresh[:40]), tmp_path, source_images=images)
    assert not (tmp_path / f"{key}.pt").exists()


def test_key_pickles_with_its_parts(key) -> None:
    again = pickle.loads(pickle.dumps(key))
    assert isinstance(again, RealCacheKey) and again == key and again.parts == key.parts


def test_images_sha256_is_that_of_the_uint8_images(images) -> None:
    from bench.features import to_uint8

    assert images_sha256(images, batch_size=7) == images_sha256(to_uint8(images)) == tensor_sha256(to_uint8(images))
