"""The Model Maker API on real photos and the real EfficientNet-Lite0: train, evaluate, predict, export."""
from __future__ import annotations

import numpy as np
import pytest

from device.classifier import Classifier
from device.imaging import decode
from device.metadata import archive, read_model_info

pytestmark = pytest.mark.slow


def test_the_tutorial_steps_train_and_export_an_int8_model_with_metadata(tutorial_run, trained_model_path):
    assert (tutorial_run["train_data"].size, tutorial_run["test_data"].size) == (450, 50)
    assert tutorial_run["accuracy"] >= 0.8 and tutorial_run["loss"] > 0
    assert sorted(p.name for p in tutorial_run["export_dir"].iterdir()) == ["model.tflite"]
    info = read_model_info(trained_model_path)
    assert info.labels == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert (info.name, info.version, info.author) == ("efficientnet_lite0", "v1", "bloomkit")
    assert (info.mean, info.std, info.input_size) == ((127.0,), (128.0,), (224, 224))
    # uint8 in and out; the input quantized exactly as the normalization, so the raw pixel is the input
    assert (info.input.dtype, info.input.scale, info.input.zero_point) == ("uint8", 1 / 128, 127)
    assert info.output.dtype == "uint8" and info.output.shape == (1, 5)
    # the export's own check would have refused any other quantization
    from trainer.export import _check_input_is_the_pixel

    with pytest.raises(RuntimeError, match="not as the normalization"):
        _check_input_is_the_pixel(trained_model_path.read_bytes(), mean=(128.0,), std=(128.0,))


def test_the_int8_export_scores_like_the_float_model(tutorial_run, trained_model_path):
    model, test_data = tutorial_run["model"], tutorial_run["test_data"]
    tflite_accuracy = model.evaluate_tflite(trained_model_path, test_data)["accuracy"]
    assert abs(tflite_accuracy - tutorial_run["accuracy"]) <= 0.06
    # image by image, the device's engine agrees with Keras on most top-1 labels
    classifier = Classifier(trained_model_path)
    device_top = [int(np.argmax(classifier.scores(decode(path)))) for path, _ in test_data.items]
    keras_top = model.predict_scores(test_data).argmax(axis=1)
    assert np.mean(np.array(device_top) == keras_top) >= 0.9


def test_predict_top_k_ranks_labels_by_score(tutorial_run):
    model, test_data = tutorial_run["model"], tutorial_run["test_data"]
    top = model.predict_top_k(test_data, k=3)
    assert len(top) == test_data.size and all(len(row) == 3 for row in top)
    for row in top:
        scores = [score for _, score in row]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
        assert len({label for label, _ in row}) == 3
    hits = [row[0][0] == test_data.index_to_label[label] for row, label in zip(top, test_data.labels)]
    assert np.mean(hits) == pytest.approx(tutorial_run["accuracy"], abs=1e-6)


def test_float_and_other_exports(tutorial_run, tmp_path):
    from trainer import ExportFormat, QuantizationConfig

    model = tutorial_run["model"]
    model.export(tmp_path, tflite_filename="float.tflite", quantization_config=None,
                 export_format=[ExportFormat.TFLITE, ExportFormat.LABEL, ExportFormat.SAVED_MODEL])
    model.export(tmp_path, tflite_filename="half.tflite", quantization_config=QuantizationConfig.for_float16())
    embedded = archive.read_file((tmp_path / "float.tflite").read_bytes(), "labels.txt")
    assert (tmp_path / "labels.txt").read_bytes() == embedded == b"daisy\ndandelion\nroses\nsunflowers\ntulips"
    assert (tmp_path / "saved_model" / "saved_model.pb").is_file()
    float_info, half_info = read_model_info(tmp_path / "float.tflite"), read_model_info(tmp_path / "half.tflite")
    assert float_info.input.dtype == half_info.input.dtype == "float32"
    float_size, half_size = (tmp_path / "float.tflite").stat().st_size, (tmp_path / "half.tflite").stat().st_size
    assert 0.4 < half_size / float_size < 0.6
    test_data = tutorial_run["test_data"]
    float_accuracy = model.evaluate_tflite(tmp_path / "float.tflite", test_data)["accuracy"]
    assert float_accuracy == pytest.approx(tutorial_run["accuracy"], abs=0.021)
    # the frozen-graph conversion is the Keras model, score for score, through the device's engine
    from trainer.tflite_eval import tflite_scores

    np.testing.assert_allclose(tflite_scores(tmp_path / "float.tflite", test_data), model.predict_scores(test_data),
                               atol=1e-4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_fast_path_trains_the_same_model_as_rerunning_the_backbone(tiny_flowers):
    """Cached features give the same weights as Model Maker's recipe, and a seed repeats a run."""
    from trainer import DataLoader, image_classifier

    data = DataLoader.from_folder(tiny_flowers)
    settings = dict(epochs=2, batch_size=8, shuffle=True, seed=7)
    fast = image_classifier.create(data, **settings)
    again = image_classifier.create(data, **settings)
    baseline = image_classifier.create(data, cache_features=False, **settings)
    weights = [model._head.get_weights() for model in (fast, again, baseline)]
    for a, b in zip(weights[0], weights[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights[0], weights[2]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(weights[0][0], image_classifier.create(data, do_train=False)._head.get_weights()[0])
    assert fast.history.history["loss"] == pytest.approx(baseline.history.history["loss"], abs=1e-4)


def test_augmentation_and_fine_tuning_take_the_full_pipeline(tiny_flowers, monkeypatch):
    from trainer import DataLoader, image_classifier

    data = DataLoader.from_folder(tiny_flowers)
    monkeypatch.setattr(image_classifier.ImageClassifier, "features",
                        lambda *args, **kwargs: pytest.fail("features were cached, but they change every step"))
    augmented = image_classifier.create(data, epochs=1, batch_size=8, use_augmentation=True, seed=1)
    assert not augmented.uses_feature_cache
    assert np.isfinite(augmented.history.history["loss"]).all()

    tuned = image_classifier.create(data, epochs=1, batch_size=8, train_whole_model=True, seed=1,
                                    learning_rate=0.01, do_train=False)
    before = [w.copy() for w in tuned._backbone.get_weights()]
    tuned.train(data, steps_per_epoch=2)
    changed = [not np.array_equal(a, b) for a, b in zip(before, tuned._backbone.get_weights())]
    assert any(changed)


def test_float_scores_from_the_cached_features_equal_the_keras_model(tutorial_run):
    model, test_data = tutorial_run["model"], tutorial_run["test_data"]
    spec = model.model_spec
    images = test_data.dataset(spec.input_size, spec.mean, spec.std, batch_size=16).map(lambda image, _: image)
    np.testing.assert_allclose(model.predict_scores(test_data), model.model.predict(images, verbose=0), atol=1e-5)


def test_a_photo_unreadable_since_loading_is_a_one_line_error_on_every_path(tiny_flowers, tmp_path):
    """The folder check passed, then a photo changed: Model Maker's recipe (tf.data) and the fast path
    (the device's engine) both name it in one DataError, instead of TensorFlow's traceback."""
    import shutil

    from trainer import DataLoader, image_classifier
    from trainer.data import DataError

    folder = shutil.copytree(tiny_flowers, tmp_path / "photos")
    data = DataLoader.from_folder(folder)
    spoiled = data.items[3][0]
    with open(spoiled, "wb") as file:
        file.write(b"not a photo any more")
    for settings in (dict(cache_features=False), dict(cache_features=True)):
        with pytest.raises(DataError, match=rf"^{spoiled} can no longer be read: "):
            image_classifier.create(data, epochs=1, batch_size=8, seed=0, **settings)
