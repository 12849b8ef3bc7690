"""A frozen backbone's features by the device's engine: the Keras backbone's, cached, computable ahead."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device import imaging
from tests.conftest import REPO, copy_photos
from trainer import frozen_features, model_spec
from trainer.backbones import weight_cache
from trainer.data import DataError, DataLoader

LITE0 = model_spec.get("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos(flowers_dir, tmp_path_factory) -> DataLoader:
    return DataLoader.from_folder(copy_photos(flowers_dir, tmp_path_factory.mktemp("photos"), 3))


def test_the_devices_engine_computes_the_keras_backbones_features(photos, lite0_features, monkeypatch):
    features = frozen_features.features(LITE0, photos).rows
    images = np.stack([imaging.normalize(imaging.load(path, LITE0.input_size), LITE0.mean, LITE0.std)
                       for path, _ in photos.items])
    expected = lite0_features(images, training=False).numpy()
    assert features.shape == (photos.size, 1280)
    np.testing.assert_allclose(features, expected, atol=1e-4)
    assert (weight_cache.cache_dir() / "efficientnet_lite0-224x224-features-tflite.npz").is_file()

    import trainer.export

    monkeypatch.setattr(trainer.export, "convert_to_tflite", lambda *args: pytest.fail("converted again"))
    np.testing.assert_array_equal(frozen_features.features(LITE0, photos).rows, features)


def test_features_started_ahead_need_no_tensorflow(photos):
    frozen_features.extractor_tflite(LITE0)  # cached, as after any earlier run
    script = """if True:
        import json, sys
        from trainer import frozen_features, model_spec
        from trainer.data import DataError, DataLoader
        data = DataLoader.from_folder(sys.argv[1])
        ahead = frozen_features.start(model_spec.get("efficientnet_lite0"), [data])
        features = ahead.take(data).rows
        print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "features": features[:, :4].tolist()}))
    """
    root = str(Path(photos.items[0][0]).parents[1])
    done = subprocess.run([sys.executable, "-c", script, root], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tensorflow"] is False
    loaded = DataLoader.from_folder(root)
    np.testing.assert_allclose(result["features"], frozen_features.features(LITE0, loaded).rows[:, :4], atol=1e-6)


def test_features_started_ahead_are_collected_once_not_computed_again(photos, monkeypatch):
    expected = frozen_features.features(LITE0, photos).rows
    other = DataLoader(photos.items[:2], photos.index_to_label)
    ahead = frozen_features.start(LITE0, [photos, other])
    monkeypatch.setattr(frozen_features, "extractor_tflite",
                        lambda spec, cached_only=False: pytest.fail("the features were not started ahead"))
    np.testing.assert_array_equal(frozen_features.features(LITE0, photos, ahead).rows, expected)
    assert len(ahead) == 1  # `other` is still to be collected; `photos` was handed over once
    assert ahead.take(photos) is None
    # matched by the loader itself, not by its contents: an equal loader was not started
    assert ahead.take(DataLoader(other.items, other.index_to_label)) is None
    np.testing.assert_array_equal(ahead.take(other).rows, expected[:2])


def test_nothing_starts_ahead_when_tensorflow_is_the_runtime(photos, monkeypatch):
    """Without LiteRT the interpreter is TensorFlow's: loading it early would import TensorFlow unquietly."""
    from device import runtime

    monkeypatch.setattr(runtime, "is_tensorflow", lambda: True)
    assert frozen_features.start(LITE0, [photos]) is None


def test_the_cached_tflite_is_stale_once_the_converter_or_the_port_changes(photos, monkeypatch):
    frozen_features.extractor_tflite(LITE0)  # converted and cached, if an earlier test has not
    assert frozen_features.extractor_tflite(LITE0, cached_only=True) is not None
    monkeypatch.setattr(frozen_features, "_versions", lambda *names: "tensorflow 9.9.9, keras 9.9.9")
    assert frozen_features.extractor_tflite(LITE0, cached_only=True) is None
    monkeypatch.undo()
    monkeypatch.setattr(model_spec, "_builder_digest", lambda: "efficientnet_lite.py 0000")
    assert frozen_features.extractor_tflite(LITE0, cached_only=True) is None


def test_an_error_in_the_background_reaches_whoever_collects_the_features(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    data = DataLoader([*photos.items[:2], (str(broken), 0)], photos.index_to_label)
    ahead = frozen_features.start(LITE0, [data])
    with pytest.raises(DataError, match="broken.jpg can no longer be read: not an image"):
        frozen_features.features(LITE0, data, ahead)


def test_a_users_own_backbone_has_no_tflite_so_tensorflow_computes_its_features(tmp_path):
    own = model_spec.ImageModelSpec(uri=tmp_path / "own.keras")
    assert frozen_features.extractor_tflite(own) is None
    assert frozen_features.features(own, DataLoader([], ["a", "b"])) is None
