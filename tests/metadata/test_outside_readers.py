"""Google's readers read what we write: tflite-support's Task Library and MediaPipe classify with it."""
from __future__ import annotations

import pytest

from device.metadata import read_model_info, write_metadata
from tests.metadata.conftest import FLOWERS

PER_CLASS = 4


@pytest.fixture(scope="module")
def our_model(bare_model, tmp_path_factory):
    """The reference model's body with metadata written by us, with labels in our reader's order."""
    path = tmp_path_factory.mktemp("ours") / "flowers.tflite"
    path.write_bytes(write_metadata(bare_model.read_bytes(), FLOWERS, mean=[0], std=[255], name="flowers"))
    return path


@pytest.fixture(scope="module")
def photos(flowers_dir):
    """A few real photos of each class, as (true label, path)."""
    return [(label, photo) for label in FLOWERS for photo in sorted((flowers_dir / label).glob("*.jpg"))[:PER_CLASS]]


def assert_mostly_right(photos, predicted):
    right = sum(label == guess for (label, _), guess in zip(photos, predicted))
    assert right >= 0.8 * len(photos), list(zip([label for label, _ in photos], predicted))


def test_task_library_reads_labels_and_classifies(our_model, photos, tflite_support):
    shown = tflite_support("display", our_model)
    image, = shown["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"]
    info = read_model_info(our_model)
    assert image["process_units"][0]["options"] == {"mean": list(info.mean), "std": list(info.std)}
    assert tuple(shown["files"]["labels.txt"].split("\n")) == info.labels
    results = tflite_support("classify", our_model, *(photo for _, photo in photos))
    assert {result["label"] for result in results} <= set(info.labels)
    assert_mostly_right(photos, [result["label"] for result in results])


def test_mediapipe_reads_labels_and_classifies(our_model, photos):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(our_model)))
    classifier = vision.ImageClassifier.create_from_options(options)
    try:
        everything = classifier.classify(mp.Image.create_from_file(str(photos[0][1])))
        predicted = [classifier.classify(mp.Image.create_from_file(str(photo))).classifications[0].categories[0]
                     for _, photo in photos]
    finally:
        classifier.close()
    categories = sorted(everything.classifications[0].categories, key=lambda category: category.index)
    assert tuple(category.category_name for category in categories) == read_model_info(our_model).labels
    assert_mostly_right(photos, [category.category_name for category in predicted])
