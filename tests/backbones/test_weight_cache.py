"""Converted weights are cached: reused on the second call, rebuilt when damaged or stale."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import model_spec
from trainer.backbones import torch_checkpoint, weight_cache


@pytest.fixture
def conversions(monkeypatch, tmp_path):
    """A fresh cache, and a count of how often the real checkpoint reader runs."""
    monkeypatch.setenv("BLOOMKIT_CACHE", str(tmp_path))
    calls = []
    real = torch_checkpoint.read_state_dict

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(torch_checkpoint, "read_state_dict", counting)
    return calls


def test_the_cache_lives_under_bloomkit_cache(conversions, tmp_path):
    assert weight_cache.cache_dir() == tmp_path / "backbones"


def test_the_second_call_reuses_the_converted_file(conversions):
    spec = model_spec.get("efficientnet_lite0")
    first = spec.imagenet_weights()
    cached = weight_cache.cache_dir() / "efficientnet_lite0.npz"
    assert len(conversions) == 1 and cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = spec.imagenet_weights()
    assert len(conversions) == 1 and cached.stat().st_mtime_ns == stamp
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "empty"])
def test_a_damaged_cache_is_rebuilt(conversions, damage):
    spec = model_spec.get("efficientnet_lite0")
    good = spec.imagenet_weights()
    cached = weight_cache.cache_dir() / "efficientnet_lite0.npz"
    data = bytearray(cached.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_a_byte":
        data[len(data) // 2] ^= 0x01
    else:
        data = bytearray()
    cached.write_bytes(bytes(data))
    rebuilt = spec.imagenet_weights()
    assert len(conversions) == 2
    assert weight_cache.digest(rebuilt) == weight_cache.digest(good)
    assert weight_cache.read(cached, spec.checkpoint().name) is not None  # the file was replaced


def test_a_cache_from_another_checkpoint_or_format_is_rebuilt(conversions, monkeypatch):
    weights = {"layer/kernel": np.ones((2, 2), np.float32)}
    path = weight_cache.cache_dir() / "demo.npz"
    weight_cache.write(path, weights, "demo-00000000.pth")
    assert weight_cache.read(path, "demo-00000000.pth").keys() == weights.keys()
    assert weight_cache.read(path, "demo-11111111.pth") is None
    monkeypatch.setattr(weight_cache, "FORMAT_VERSION", weight_cache.FORMAT_VERSION + 1)
    assert weight_cache.read(path, "demo-00000000.pth") is None
    zeros = {"layer/kernel": np.zeros((2, 2), np.float32)}
    rebuilt = weight_cache.cached_weights("demo", "demo-00000000.pth", lambda: zeros)
    assert np.array_equal(rebuilt["layer/kernel"], np.zeros((2, 2)))
    assert list(path.parent.glob(".demo.*")) == []  # no temporary file left behind


def test_an_unwritable_cache_only_costs_a_warning(conversions, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BLOOMKIT_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache converted weights"):
        weights = model_spec.get("efficientnet_lite0").imagenet_weights()
    assert len(conversions) == 1 and "conv_stem/kernel" in weights
