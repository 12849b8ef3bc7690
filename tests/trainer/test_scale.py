"""Training on thousands of photos in bounded memory: photos are decoded and fed to the backbone as a stream,
so a run's peak memory does not grow with its photos (beyond their 5 KB of features each)."""
from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from testkit.photo_variants import variant_folder
from testkit.trainer_runs import cold_feature_cache, train_measured
from trainer import frozen_features, model_spec

# flowers-mini's 500 photos made 6,000: enough that holding them decoded (900 MB) would show above the
# int8 conversion's own peak at the end of a run (~400 MB over the rest)
LARGE_VARIANTS = 12


@pytest.mark.slow
def test_trainer_train_peak_memory_does_not_grow_with_the_photos(flowers_dir, tmp_path):
    spec = model_spec.get("efficientnet_lite0")
    frozen_features.extractor_tflite(spec)  # converted once into the cache that the runs' caches link to
    large = variant_folder(flowers_dir, tmp_path / "photos", LARGE_VARIANTS)
    runs = {}
    for data in (flowers_dir, large):
        run = train_measured(data, tmp_path / f"export-{data.name}", cold_feature_cache(tmp_path), "--epochs", "1",
                             timeout=1200)
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        photos = summary["train_count"] + summary["test_count"]
        assert summary["features_computed"] == photos, "every photo decoded and through the backbone"
        runs[data] = photos, run.peak_rss
    (small_photos, small_peak), (large_photos, large_peak) = runs[flowers_dir], runs[large]
    assert large_photos == LARGE_VARIANTS * small_photos
    height, width = spec.input_size
    added = large_photos - small_photos
    decoded = added * height * width * 3  # the added photos held decoded, at their smallest (uint8, input size)
    features = added * 1280 * 4  # float32; twice that is the slack allowed for a run's noise
    assert large_peak - small_peak < 2 * features + decoded / 4, (
        f"peak RSS grew {(large_peak - small_peak) >> 20} MB from {small_photos} to {large_photos} photos; "
        f"their features are {features >> 20} MB, holding them decoded takes {decoded >> 20} MB")


class _Tracked(np.ndarray):
    """An array one can hold a weak reference to."""


def test_the_heads_training_set_shuffles_like_its_rows_and_lets_them_go_with_it(tiny_flowers):
    import keras
    import tensorflow as tf

    from trainer import DataLoader, image_classifier

    classifier = image_classifier.create(DataLoader.from_folder(tiny_flowers), do_train=False, seed=3, shuffle=True)
    features = np.random.default_rng(0).normal(size=(70, 1280)).astype(np.float32).view(_Tracked)
    labels = np.arange(70) % classifier.num_classes
    one_hot = np.eye(classifier.num_classes, dtype=np.float32)[labels]
    keras.utils.set_random_seed(0)
    ours = list(classifier._feature_dataset(features, labels, training=True).repeat().take(8).as_numpy_iterator())
    keras.utils.set_random_seed(0)
    rows = tf.data.Dataset.from_tensor_slices((np.asarray(features), one_hot))
    shuffled = rows.shuffle(70, seed=3, reshuffle_each_iteration=True).batch(classifier.hparams.batch_size)
    expected = list(shuffled.repeat().take(8).as_numpy_iterator())
    assert all(np.array_equal(a, b) and np.array_equal(c, d) for (a, c), (b, d) in zip(ours, expected))
    assert len(ours) == len(expected) == 8
    gone = weakref.ref(features)
    del features, ours
    gc.collect()
    assert gone() is None, "TensorFlow still holds the training set's features"
