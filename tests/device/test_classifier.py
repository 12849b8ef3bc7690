"""The Classifier on real models: the Model Maker reference, and tiny per-channel-mean models whose
scores expose channel order, normalization and quantization directly."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from device import imaging
from device.classifier import Category, Classifier
from device.errors import UserError

# A solid 20×30 photo: R=255, G=0, B=51, so each channel mean is known and all three differ.
SOLID = np.empty((20, 30, 3), dtype=np.uint8)
SOLID[...] = (255, 0, 51)
UNIT_MEANS = np.array([1.0, 0.0, 0.2])  # SOLID's channel means / 255


def photos(flowers_dir, per_label):
    return [(label.name, path) for label in sorted(flowers_dir.iterdir())
            for path in sorted(label.glob("*.jpg"))[:per_label]]


def test_reference_model_is_read_from_its_metadata(reference_model, reference_classifier):
    assert reference_classifier.labels == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert reference_classifier.input_size == (224, 224)
    assert reference_classifier.model_sha256 == hashlib.sha256(reference_model.read_bytes()).hexdigest()
    assert reference_classifier.info.has_metadata


def test_reference_model_classifies_real_photos(flowers_dir, reference_classifier):
    picked = photos(flowers_dir, per_label=8)
    correct = 0
    for label, path in picked:
        scores = reference_classifier.scores(imaging.decode(path))
        assert scores.dtype == np.float32 and scores.shape == (5,)
        assert scores.min() >= 0 and scores.max() <= 1 and abs(scores.sum() - 1) < 0.05
        correct += reference_classifier.classify(imaging.decode(path))[0].label == label
    assert correct / len(picked) >= 0.85


def test_uint8_model_whose_quantization_is_the_normalization_gets_raw_pixels(reference_classifier):
    """The Task Library's fast path: Model Maker's input (scale 1/255, mean 0, std 255) is the pixel itself."""
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    tensor = reference_classifier.prepare(image)
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor[0], imaging.resize(image, (224, 224)))


def test_float_input_is_normalized_rgb(tiny_model):
    classifier = Classifier(tiny_model("float32", mean=[127.5], std=[127.5]))
    np.testing.assert_allclose(classifier.scores(SOLID), [1.0, -1.0, -0.6], atol=1e-6)


def test_per_channel_normalization(tiny_model):
    classifier = Classifier(tiny_model("float32", mean=[255, 0, 1], std=[1, 1, 50]))
    np.testing.assert_allclose(classifier.scores(SOLID), [0.0, 0.0, 1.0], atol=1e-6)


def test_uint8_input_is_requantized_when_its_scale_differs(tiny_model):
    classifier = Classifier(tiny_model("uint8", mean=[0], std=[255], input_quantization=(0.01, 0),
                                       output_quantization=(1 / 256, 0)))
    assert classifier.prepare(SOLID)[0, 0, 0].tolist() == [100, 0, 20]  # pixel / 255 / 0.01
    np.testing.assert_allclose(classifier.scores(SOLID), UNIT_MEANS, atol=1 / 128)


def test_int8_input_and_output(tiny_model):
    classifier = Classifier(tiny_model("int8", mean=[0], std=[255], input_quantization=(1 / 255, -128),
                                       output_quantization=(1 / 256, -128)))
    assert classifier.prepare(SOLID)[0, 0, 0].tolist() == [127, -128, -77]
    scores = classifier.scores(SOLID)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, UNIT_MEANS, atol=1 / 128)
    assert [c.label for c in classifier.classify(SOLID)] == ["r", "b", "g"]


def test_model_without_metadata_takes_a_labels_file(tiny_model, rgb_labels):
    classifier = Classifier(tiny_model("uint8", input_quantization=(1 / 255, 0),
                                       output_quantization=(1 / 256, 0)), labels_file=rgb_labels)
    assert classifier.labels == ("r", "g", "b")
    np.testing.assert_allclose(classifier.scores(SOLID), UNIT_MEANS, atol=1 / 128)



def test_int8_model_without_metadata_gets_the_whole_pixel_range(tiny_model, rgb_labels):
    classifier = Classifier(tiny_model("int8", input_quantization=(1 / 255, -128),
                                       output_quantization=(1 / 256, -128)), labels_file=rgb_labels)
    assert classifier.prepare(SOLID)[0, 0, 0].tolist() == [127, -128, -77]  # pixel − 128, nothing clipped
    np.testing.assert_allclose(classifier.scores(SOLID), UNIT_MEANS, atol=1 / 128)


SCORES = np.array([0.1, 0.5, 0.05, 0.3, 0.05], dtype=np.float32)  # daisy dandelion roses sunflowers tulips


@pytest.mark.parametrize("options, expected", [
    ({"top_k": 2}, [("dandelion", 0.5), ("sunflowers", 0.3)]),
    ({"top_k": None, "score_threshold": 0.3}, [("dandelion", 0.5), ("sunflowers", 0.3)]),  # inclusive
    ({"top_k": 1, "allow": ["tulips", "roses", "nope", "roses"]}, [("roses", 0.05)]),       # filter, then cut
    ({"top_k": 2, "deny": ["dandelion"]}, [("sunflowers", 0.3), ("daisy", 0.1)]),
    ({"top_k": 3, "score_threshold": 0.6}, []),
])
def test_top_follows_the_task_library(reference_model, options, expected):
    top = Classifier(reference_model, **options).top(SCORES)
    assert all(isinstance(c, Category) for c in top)
    assert [(c.label, pytest.approx(c.score)) for c in top] == expected
    assert [c.index for c in top] == [Classifier(reference_model).labels.index(label) for label, _ in expected]


@pytest.mark.parametrize("options, message", [
    ({"allow": ["daisy"], "deny": ["roses"]}, "mutually exclusive"),
    ({"allow": ["orchid"]}, "none of orchid is a label"),
    ({"deny": ["orchid", "lily"]}, "none of orchid, lily is a label"),
    ({"top_k": 0}, "at least 1"),
    ({"threads": 0}, "at least 1"),
])
def test_bad_options_are_one_line_errors(reference_model, options, message):
    with pytest.raises(UserError, match=message) as error:
        Classifier(reference_model, **options)
    assert "\n" not in str(error.value)


def bad_models(tmp_path, reference_model, rgb_labels):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(reference_model.read_bytes()[:100_000])
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model\n" * 10)
    two_labels = tmp_path / "two.txt"
    two_labels.write_text("r\ng\n")
    from tests.device.tiny_models import channel_mean_model
    four_channels = tmp_path / "four-channels.tflite"
    four_channels.write_bytes(channel_mean_model("float32", input_shape=[1, 8, 8, 4]))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(channel_mean_model("float32"))
    return {
        "missing file": (tmp_path / "nope.tflite", None),
        "truncated": (truncated, None),
        "not TFLite": (text, None),
        "no metadata, no labels": (bare, None),
        "labels vs outputs": (bare, two_labels),
        "four-channel input": (four_channels, rgb_labels),
    }


def test_bad_models_are_one_line_errors(tmp_path, reference_model, rgb_labels):
    for case, (model, labels) in bad_models(tmp_path, reference_model, rgb_labels).items():
        with pytest.raises(UserError) as error:
            Classifier(model, labels_file=labels)
        message = str(error.value)
        assert message and "\n" not in message, case


def test_one_classifier_is_safe_across_threads(flowers_dir, reference_model):
    classifier = Classifier(reference_model, threads=1)
    images = [imaging.decode(path) for _, path in photos(flowers_dir, per_label=2)] * 3
    alone = [classifier.scores(image) for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(classifier.scores, images))
    for expected, got in zip(alone, together):
        np.testing.assert_array_equal(expected, got)
