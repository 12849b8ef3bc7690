"""The registry's contract: names, shapes, parameter counts, trainability, and custom specs."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer import model_spec
from trainer.model_spec import ImageModelSpec, ModelSpecError


def test_lite0_is_the_default_and_matches_model_makers_feature_vector(lite0_features):
    assert model_spec.names()[0] == "efficientnet_lite0"
    spec = model_spec.get("efficientnet_lite0")
    assert (spec.name, spec.input_size, spec.mean, spec.std) == ("efficientnet_lite0", (224, 224), (127.0,), (128.0,))
    model = lite0_features
    assert model.count_params() == 3_413_024  # what Model Maker's TF Hub lite0 feature-vector layer had
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1280)
    assert all(layer.trainable for layer in model.layers)


@pytest.mark.parametrize("name, size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite1_and_lite2_feature_extractors_build(name, size):
    spec = model_spec.get(name)
    assert spec.input_size == (size, size)
    model = spec.feature_extractor()
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 1280)


def test_a_frozen_feature_extractor_keeps_batchnorm_in_inference_mode():
    model = model_spec.get("efficientnet_lite0").feature_extractor()
    model.trainable = False
    batch = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    inference = model(batch, training=False)
    assert np.array_equal(model(batch, training=True), inference)
    model.trainable = True
    assert not np.allclose(model(batch, training=True), inference, atol=1e-3)


def test_unknown_names_are_a_one_line_error_listing_the_known_ones():
    with pytest.raises(ModelSpecError, match="unknown model spec 'mobilenet_v2'; known: efficientnet_lite0, "
                                             "efficientnet_lite1, efficientnet_lite2"):
        model_spec.get("mobilenet_v2")


def test_get_passes_a_spec_through():
    spec = ImageModelSpec(uri="anything.keras", input_image_shape=[96, 128])
    assert model_spec.get(spec) is spec


def _tiny_feature_extractor(pooled: bool = True) -> keras.Model:
    inputs = keras.Input((96, 128, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x) if pooled else x)


@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_custom_spec_loads_a_saved_feature_extractor(tmp_path, kind):
    original = _tiny_feature_extractor()
    if kind == "keras":
        uri = tmp_path / "features.keras"
        original.save(uri)
    else:
        uri = tmp_path / "features_savedmodel"
        original.export(str(uri), verbose=False)
    spec = ImageModelSpec(uri=uri, input_image_shape=[96, 128], name="tiny", mean=[127.5], std=[127.5])
    assert (spec.input_size, spec.mean, spec.std) == ((96, 128), (127.5,), (127.5,))
    loaded = spec.feature_extractor()
    assert loaded.output_shape == (None, 8)
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 96, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), original.predict(batch, verbose=0), atol=1e-6)


def test_custom_spec_mistakes_are_user_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="not found"):
        ImageModelSpec(uri=tmp_path / "missing.keras", input_image_shape=[96, 128]).feature_extractor()
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ModelSpecError, match="neither a .keras file nor a SavedModel"):
        ImageModelSpec(uri=tmp_path / "weights.h5", input_image_shape=[96, 128]).feature_extractor()
    unpooled = tmp_path / "unpooled.keras"
    _tiny_feature_extractor(pooled=False).save(unpooled)
    with pytest.raises(ModelSpecError, match="add global pooling"):
        ImageModelSpec(uri=unpooled, input_image_shape=[96, 128]).feature_extractor()
    (tmp_path / "damaged.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelSpecError, match="cannot load"):
        ImageModelSpec(uri=tmp_path / "damaged.keras", input_image_shape=[96, 128]).feature_extractor()
    with pytest.raises(ModelSpecError, match=r"does not take \[64, 64\] RGB images"):
        ImageModelSpec(uri=unpooled, input_image_shape=[64, 64]).feature_extractor()
    with pytest.raises(ModelSpecError, match=r"\[height, width\]"):
        ImageModelSpec(uri=unpooled, input_image_shape=[96, 128, 3])
    with pytest.raises(ModelSpecError, match="std must not be zero"):
        ImageModelSpec(uri=unpooled, std=[0.0])
