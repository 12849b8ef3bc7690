"""The Keras port of EfficientNet-Lite computes what the PyTorch original computes, on real photos.

tests/backbones/data/torch_logits.npz holds the logits PyTorch 2.13 gave for the same inputs
(made by tests/backbones/torch_reference.py, see docs/backbones.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from device import imaging
from trainer import model_spec
from trainer.backbones.efficientnet_lite import CLASSIFIER_WEIGHTS

TORCH_LOGITS = np.load(Path(__file__).parent / "data" / "torch_logits.npz")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def photos(spec) -> dict[str, np.ndarray]:
    """The whole photo, bilinear-resized to the input size, normalized as the spec says."""
    return {name: imaging.normalize(imaging.resize(getattr(skimage.data, name)(), spec.input_size), spec.mean, spec.std)
            for name in ("chelsea", "coffee")}


@pytest.mark.parametrize("name", model_spec.names())
def test_imagenet_head_names_the_photos_and_matches_pytorch(name):
    spec = model_spec.get(name)
    inputs = photos(spec)
    logits = dict(zip(inputs, spec.classifier().predict(np.stack(list(inputs.values())), verbose=0)))
    assert int(np.argmax(logits["chelsea"])) in CAT_CLASSES
    assert int(np.argmax(logits["coffee"])) == ESPRESSO
    for photo, values in logits.items():
        np.testing.assert_allclose(values, TORCH_LOGITS[f"{name}/{photo}"], atol=1e-4, rtol=0)


def test_feature_extractor_features_are_the_classifier_inputs(lite0_features):
    """The 1280 pooled features, through the ImageNet head's weights, give PyTorch's logits."""
    spec = model_spec.get("efficientnet_lite0")
    features = lite0_features.predict(photos(spec)["coffee"][None], verbose=0)[0]
    weights = spec.imagenet_weights()
    kernel, bias = (weights[path] for path in CLASSIFIER_WEIGHTS)
    np.testing.assert_allclose(features @ kernel + bias, TORCH_LOGITS["efficientnet_lite0/coffee"], atol=1e-4, rtol=0)
