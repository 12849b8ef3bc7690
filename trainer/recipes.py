"""Training recipes: Model Maker's hyper-parameters, and what bloomkit adds beyond them.

Needs no TensorFlow, so the command line can list the recipes before it loads.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from device.errors import UserError


@dataclass(frozen=True)
class HParams:
    """Model Maker's hyperparameters: TF Hub's make_image_classifier defaults (its `use_hub_library` path)."""

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 0.005
    momentum: float = 0.9
    dropout_rate: float = 0.2
    l2: float = 1e-4
    label_smoothing: float = 0.1
    train_whole_model: bool = False
    use_hub_library: bool = True
    warmup_steps: int | None = None
    shuffle: bool = False
    # Beyond Model Maker (all off in its recipe): a validation slice carved per label from the training
    # photos, early stopping on its loss after `patience` epochs without progress (best weights restored,
    # `epochs` then being the most), and a cosine decay of the learning rate over those epochs.
    validation_fraction: float = 0.0
    patience: int = 0
    cosine_decay: bool = False


# The recipes `create` and `trainer train --recipe` know. "model-maker" is Model Maker's, exactly; the
# other uses the cheap epochs of cached features (docs/benchmarks-trainer.md says what each part bought).
RECIPES = {
    "model-maker": HParams(),
    "early-stopping": HParams(epochs=100, shuffle=True, validation_fraction=0.1, patience=10, cosine_decay=True),
}
DEFAULT_RECIPE = "model-maker"


# Model Maker's other recipe (`use_hub_library=False`): RMSprop, linear-in-batch learning rate, warm-up
# then cosine decay.
NON_HUB_DEFAULTS = {"epochs": 10, "batch_size": 64, "learning_rate": 0.004}
DEFAULT_DECAY_SAMPLES = 10000 * 256
DEFAULT_WARMUP_EPOCHS = 2


class RecipeError(UserError):
    """An unknown recipe name."""


def resolve(recipe: str | None, given: Mapping[str, Any], use_hub_library: bool = True) -> tuple[str, HParams]:
    """The recipe's name and hyper-parameters with `given` (those not None) applied. Without a recipe,
    any given hyper-parameter (or Model Maker's other recipe) means Model Maker's, so that it keeps the
    meaning it had there; otherwise the default recipe."""
    given = {name: value for name, value in given.items() if value is not None}
    if recipe is None:
        recipe = "model-maker" if given or not use_hub_library else DEFAULT_RECIPE
    if recipe not in RECIPES:
        raise RecipeError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    base = replace(RECIPES[recipe], use_hub_library=use_hub_library)
    if not use_hub_library:
        base = replace(base, **NON_HUB_DEFAULTS)
    return recipe, replace(base, **given)
