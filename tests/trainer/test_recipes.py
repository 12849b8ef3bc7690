"""Recipes: which one a call gets, and what the early-stopping one does (stops, keeps the best epoch)."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import recipes
from trainer.recipes import RecipeError


def test_without_a_recipe_or_hyper_parameters_the_default_recipe_is_used():
    assert recipes.resolve(None, {"epochs": None, "batch_size": None}) == (
        recipes.DEFAULT_RECIPE, recipes.RECIPES[recipes.DEFAULT_RECIPE])


@pytest.mark.parametrize("given", [{"epochs": 5}, {"learning_rate": 0.01}, {"shuffle": False}, {"batch_size": 8}])
def test_any_model_maker_hyper_parameter_given_means_model_makers_recipe(given):
    name, hparams = recipes.resolve(None, given)
    assert name == "model-maker"
    assert (hparams.validation_fraction, hparams.patience, hparams.cosine_decay) == (0, 0, False)
    assert all(getattr(hparams, key) == value for key, value in given.items())


def test_model_makers_other_recipe_keeps_its_defaults():
    name, hparams = recipes.resolve(None, {}, use_hub_library=False)
    assert (name, hparams.epochs, hparams.batch_size, hparams.learning_rate) == ("model-maker", 10, 64, 0.004)


def test_a_named_recipe_takes_the_given_values_on_top():
    name, hparams = recipes.resolve("early-stopping", {"epochs": 30})
    assert (name, hparams.epochs, hparams.patience, hparams.validation_fraction) == ("early-stopping", 30, 10, 0.1)


def test_an_unknown_recipe_is_a_user_error():
    with pytest.raises(RecipeError, match="unknown recipe 'fast'; known: model-maker, early-stopping"):
        recipes.resolve("fast", {})


@pytest.mark.slow
def test_early_stopping_carves_validation_stops_and_keeps_the_best_epoch(tiny_flowers):
    from trainer import DataLoader, image_classifier

    data = DataLoader.from_folder(tiny_flowers)
    model = image_classifier.create(data, recipe="early-stopping", batch_size=8, seed=3)
    log, history = model.training_log, model.history.history
    assert log["recipe"] == "early-stopping"
    assert (log["training_photos"], log["validation_photos"]) == (35, 5)  # 10 % of 8 photos a label: 1 each
    assert log["epochs_run"] == len(history["val_loss"]) < 100 and log["stopped_early"]
    assert log["best_epoch"] == int(np.argmin(history["val_loss"])) + 1 == log["epochs_run"] - 10
    # the weights kept are the best epoch's: the head scores the validation photos as it did then
    keep = data.split_mask(0.9, seed=3)
    features, labels = model.features(data)[~keep], data.labels[~keep]
    loss, _ = model._head.evaluate(features, np.eye(5)[labels], verbose=0)  # compiled as it trained
    assert loss == pytest.approx(min(history["val_loss"]), rel=1e-4)


@pytest.mark.slow
def test_model_makers_recipe_runs_exactly_its_epochs_without_validation(tiny_flowers):
    from trainer import DataLoader, image_classifier

    data = DataLoader.from_folder(tiny_flowers)
    model = image_classifier.create(data, epochs=3, batch_size=8, seed=3)
    assert model.training_log == {"recipe": "model-maker", "epochs_run": 3, "training_photos": 40,
                                  "validation_photos": 0, "best_epoch": 3, "stopped_early": False}
    assert set(model.history.history) == {"loss", "accuracy"}


@pytest.mark.slow
def test_the_full_pipeline_carves_the_same_validation_slice(tiny_flowers):
    from trainer import DataLoader, image_classifier

    data = DataLoader.from_folder(tiny_flowers)
    model = image_classifier.create(data, recipe="early-stopping", batch_size=8, epochs=2, seed=3,
                                    cache_features=False)
    assert (model.training_log["training_photos"], model.training_log["validation_photos"]) == (35, 5)
    assert len(model.history.history["val_loss"]) == 2
