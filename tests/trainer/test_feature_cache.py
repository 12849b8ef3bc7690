"""The persistent feature cache: the backbone runs only on photos it has not seen, whatever their name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, copy_photos
from trainer import feature_cache, frozen_features, model_spec
from trainer.data import DataLoader
from trainer.feature_cache import FeatureCache, cached_features

LITE0 = model_spec.get("efficientnet_lite0")


def unique_photos(flowers_dir: Path, folder: Path, per_label: int) -> Path:
    """Real photos made new to any cache: bytes after the JPEG's end change the hash, not the pixels."""
    copy_photos(flowers_dir, folder, per_label)
    for photo in folder.glob("*/*.jpg"):
        with open(photo, "ab") as file:
            file.write(uuid.uuid4().bytes)
    return folder


def fake_rows(calls: list):
    def compute(indexes):
        calls.append(list(indexes))
        return (np.full(4, index, dtype=np.float32) for index in indexes)
    return compute


def test_only_photos_not_seen_before_are_computed(tmp_path):
    paths = []
    for name in "abcd":
        (tmp_path / name).write_bytes(name.encode() * 100)
        paths.append(str(tmp_path / name))
    cache = FeatureCache(tmp_path / "features.sqlite")
    calls: list = []
    first, computed, cached, _ = cached_features(cache, "extractor-1", paths[:3], fake_rows(calls))
    assert calls == [[0, 1, 2]] and first[:, 0].tolist() == [0, 1, 2] and (computed, cached) == (3, 0)
    os.rename(paths[0], tmp_path / "renamed")  # a moved photo keeps its features
    again, computed, cached, _ = cached_features(cache, "extractor-1", [str(tmp_path / "renamed"), *paths[1:]],
                                                 fake_rows(calls))
    assert calls[1] == [3] and (computed, cached) == (1, 3), "only the new photo"
    np.testing.assert_array_equal(again[:3], first)
    cached_features(cache, "extractor-2", paths[1:3], fake_rows(calls))
    assert calls[2] == [0, 1], "another extractor has features of its own"


def test_a_changed_photo_is_hashed_again(tmp_path):
    photo = tmp_path / "photo"
    photo.write_bytes(b"one")
    cache = FeatureCache(tmp_path / "features.sqlite")
    first = cache.photo_hashes([str(photo)])
    photo.write_bytes(b"two, longer")
    assert cache.photo_hashes([str(photo)]) != first


def test_the_key_covers_the_extractor_input_and_normalization():
    keys = {feature_cache.extractor_key(model, size, mean, std)
            for model, size, mean, std in [(b"m1", (224, 224), (127.0,), (128.0,)),
                                           (b"m2", (224, 224), (127.0,), (128.0,)),
                                           (b"m1", (240, 240), (127.0,), (128.0,)),
                                           (b"m1", (224, 224), (0.0,), (255.0,))]}
    assert len(keys) == 4


def test_an_unusable_cache_is_a_warning_and_the_features_are_still_computed(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    monkeypatch.setattr(feature_cache, "cache_root", lambda: blocker)
    data = DataLoader([(str(blocker), 0)], ["a", "b"])
    rows, computed, cached, _ = feature_cache.features_for(b"model", LITE0, data,
                                                            lambda subset: iter([np.ones(3, np.float32)]))
    assert rows.shape == (1, 3) and (computed, cached) == (1, 0)
    assert "trainer: warning: feature cache not used" in capsys.readouterr().err


def test_the_backbone_runs_only_on_the_photos_added(flowers_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "cache_root", lambda: tmp_path / "cache")
    folder = unique_photos(flowers_dir, tmp_path / "photos", 3)
    first = DataLoader.from_folder(folder)
    computed = frozen_features.features(LITE0, first)
    assert (computed.computed, computed.cached) == (15, 0)
    before = dict(zip((path for path, _ in first.items), computed.rows))
    add_unique(flowers_dir, folder, ("daisy", "roses"), 10, 11)
    data = DataLoader.from_folder(folder)
    computed = frozen_features.features(LITE0, data)
    assert (computed.computed, computed.cached) == (2, 15)
    after = dict(zip((path for path, _ in data.items), computed.rows))
    for path, row in before.items():
        np.testing.assert_array_equal(after[path], row)


def add_unique(flowers_dir: Path, folder: Path, labels, start: int, stop: int) -> None:
    for label in labels:
        for extra in sorted((flowers_dir / label).glob("*.jpg"))[start:stop]:
            (folder / label / f"added-{extra.name}").write_bytes(extra.read_bytes() + uuid.uuid4().bytes)


@pytest.mark.slow
def test_trainer_train_json_counts_the_features_computed_and_cached(flowers_dir, tmp_path):
    folder = unique_photos(flowers_dir, tmp_path / "photos", 8)

    def train() -> dict:
        done = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "--data", str(folder), "--epochs", "1",
                               "--export-dir", str(tmp_path / "export"), "--json"],
                              capture_output=True, text=True, cwd=REPO, timeout=900)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = train()
    assert (first["features_computed"], first["features_cached"]) == (40, 0)
    add_unique(flowers_dir, folder, ("daisy", "tulips"), 20, 22)
    second = train()
    assert (second["features_computed"], second["features_cached"]) == (4, 40)


def test_memory_stays_bounded_by_the_photos_asked_for_not_the_cache(tmp_path):
    import tracemalloc

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for number in range(1000):
        (folder / str(number)).write_bytes(number.to_bytes(4, "little"))
        paths.append(str(folder / str(number)))
    cache = FeatureCache(tmp_path / "features.sqlite")
    photos = cache.photo_hashes(paths)
    rows = np.random.default_rng(0).random((1000, 512), dtype=np.float32)
    cache.store("ours", list(zip(photos, rows)))
    for start in range(0, 10000, 1000):  # ten times as many features of another extractor beside them
        cache.store("another", [(f"other-{start + i}", row) for i, row in enumerate(rows)])
    tracemalloc.start()
    found = cached_features(cache, "ours", paths, lambda indexes: pytest.fail("all are cached")).rows
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(found, rows)
    assert peak < 2 * found.nbytes + (4 << 20), f"peak {peak >> 20} MB for a {found.nbytes >> 20} MB answer"
