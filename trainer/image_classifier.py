"""Model Maker's `image_classifier`: `create` a classifier from a `DataLoader`, evaluate it, export it.

The classifier is the spec's backbone, then dropout and a softmax layer. With a frozen backbone and
no augmentation (Model Maker's default) the backbone's output for an image never changes, so each
image goes through the backbone once and the head trains on those cached features: the same model
and the same training steps as re-running the backbone every epoch, in a fraction of the time.
"""
from __future__ import annotations

import functools
import os
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from device.atomic import atomic_write
from device.errors import UserError
from device.metadata import labels as labels_txt
import trainer._quiet_tensorflow  # noqa: F401  (before TensorFlow)
import keras
import tensorflow as tf
from trainer import frozen_features, saved_run
from trainer.frozen_features import FeaturesAhead
from trainer.data import DataLoader, check_batch_fits, photo_errors
from trainer.export import ExportFormat, save_saved_model, tflite_with_metadata
from trainer.quantization import QuantizationConfig
from trainer import recipes
from trainer.recipes import DEFAULT_DECAY_SAMPLES, DEFAULT_WARMUP_EPOCHS, HParams
from trainer.tflite_eval import tflite_scores

DEFAULT_EXPORT_FORMAT = (ExportFormat.TFLITE,)


class TrainingError(UserError):
    """Training cannot start with these data and settings."""


def create(train_data: DataLoader, model_spec="efficientnet_lite0", validation_data: DataLoader | None = None,
           batch_size: int | None = None, epochs: int | None = None, steps_per_epoch: int | None = None,
           train_whole_model: bool | None = None, dropout_rate: float | None = None,
           learning_rate: float | None = None, momentum: float | None = None, shuffle: bool | None = None,
           use_augmentation: bool = False, use_hub_library: bool = True, warmup_steps: int | None = None,
           model_dir: str | None = None, do_train: bool = True, *, seed: int | None = None,
           cache_features: bool = True, features_ahead: FeaturesAhead | None = None,
           recipe: str | None = None) -> "ImageClassifier":
    """Build a classifier on `model_spec` (a spec or its name) and train it on `train_data`, as Model Maker did.

    `recipe` names one of `RECIPES` (default `DEFAULT_RECIPE`); given any of Model Maker's training
    hyper-parameters and no recipe, Model Maker's recipe is used, so they mean what they meant there.

    `seed` makes the run reproducible. `cache_features=False` re-runs the frozen backbone every epoch
    (Model Maker's way, kept for comparison); it changes nothing when the backbone trains or images
    are augmented, since then features change every step. `features_ahead` holds features already
    being computed (`frozen_features.start`) for the data sets this will train and score on.
    `model_dir` is accepted and unused.
    """
    del model_dir  # Model Maker kept checkpoints there; a training here is short enough to rerun
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if isinstance(model_spec, str):
        from trainer import model_spec as registry

        model_spec = registry.get(model_spec)
    given = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "momentum": momentum,
             "dropout_rate": dropout_rate, "train_whole_model": train_whole_model, "warmup_steps": warmup_steps,
             "shuffle": shuffle}
    recipe, hparams = recipes.resolve(recipe, given, use_hub_library)
    if do_train:
        check_batch_fits(train_data, hparams.batch_size)
    classifier = ImageClassifier(model_spec, train_data.index_to_label, hparams,
                                 use_augmentation=use_augmentation, seed=seed, features_ahead=features_ahead,
                                 recipe=recipe)
    if do_train:
        classifier.train(train_data, validation_data, steps_per_epoch=steps_per_epoch, cache_features=cache_features)
    return classifier


class ImageClassifier:
    """A trainable, exportable classifier: `model` is one Keras model, normalized image in, scores out."""

    def __init__(self, model_spec, index_to_label: Sequence[str], hparams: HParams = HParams(),
                 shuffle: bool | None = None, use_augmentation: bool = False, seed: int | None = None,
                 features_ahead: FeaturesAhead | None = None, model=None, recipe: str = "model-maker"):
        """`model`: an already trained model of this layout (backbone, then head), as `load` reads one."""
        self.model_spec = model_spec
        self.index_to_label = list(index_to_label)
        self.num_classes = len(self.index_to_label)
        self.hparams = hparams
        self.shuffle = hparams.shuffle if shuffle is None else shuffle
        self.use_augmentation = use_augmentation
        self.seed = seed
        self.features_ahead = features_ahead
        self.recipe = recipe
        self.training_log: dict = {}  # what the last training did: epochs run, the best epoch, photos
        self.history = None  # the `keras.callbacks.History` of the last training
        self.timings: dict[str, float] = {}  # seconds spent extracting features and fitting
        # by the frozen backbone's cache, and the seconds its passes over the photos took
        self.feature_counts = {"features_computed": 0, "features_cached": 0, "feature_pass_seconds": 0.0}
        self.representative_data: DataLoader | None = None  # calibrates the default int8 export
        self.model, self._backbone, self._head = self._build() if model is None else _parts(model)
        self._compile(self.model)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model_spec.input_size)

    def _build(self):
        backbone = self.model_spec.feature_extractor()
        backbone.trainable = self.hparams.train_whole_model
        head = keras.Sequential([
            keras.Input(shape=backbone.output_shape[1:], name="features"),
            keras.layers.Dropout(self.hparams.dropout_rate, seed=self.seed),
            keras.layers.Dense(self.num_classes, activation="softmax",
                               kernel_regularizer=keras.regularizers.L2(self.hparams.l2), name="probability"),
        ], name="head")
        image = keras.Input(shape=(*self.input_size, 3), name="image")
        # BatchNormalization keeps its ImageNet statistics even when the whole model trains.
        model = keras.Model(image, head(backbone(image, training=False)), name=self.model_spec.name)
        return model, backbone, head

    def _compile(self, model, steps_per_epoch: int | None = None) -> None:
        hp = self.hparams
        if hp.use_hub_library:
            learning_rate = hp.learning_rate
            if hp.cosine_decay:
                learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, (steps_per_epoch or 1) * hp.epochs)
            optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=hp.momentum)
        else:
            steps = steps_per_epoch or 1
            learning_rate = keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(steps * hp.epochs, DEFAULT_DECAY_SAMPLES // hp.batch_size),
                warmup_target=hp.learning_rate * hp.batch_size / 256,
                warmup_steps=hp.warmup_steps if hp.warmup_steps is not None else DEFAULT_WARMUP_EPOCHS * steps)
            optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, rho=0.9, momentum=0.9, epsilon=0.001)
        model.compile(optimizer=optimizer, metrics=["accuracy"],
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing))

    @property
    def uses_feature_cache(self) -> bool:
        return not (self.hparams.train_whole_model or self.use_augmentation)

    def train(self, train_data: DataLoader, validation_data: DataLoader | None = None,
              steps_per_epoch: int | None = None, cache_features: bool = True):
        """Fit for `hparams.epochs` epochs of `size // batch_size` steps, as Model Maker did; with the
        recipe's validation slice and patience, stop early and keep the best epoch's weights."""
        hp = self.hparams
        check_batch_fits(train_data, hp.batch_size)
        if list(train_data.index_to_label) != self.index_to_label:
            raise TrainingError("the training data's labels differ from the classifier's")
        self.representative_data = train_data
        started = time.perf_counter()
        model, train_ds, validation_ds, training_count, validation_count = self._training_sets(
            train_data, validation_data, cache_features)
        self.timings["features_seconds"] = time.perf_counter() - started
        steps_per_epoch = steps_per_epoch or max(1, training_count // hp.batch_size)
        self._compile(model, steps_per_epoch)
        callbacks = [_EpochBar(hp.epochs)]
        stopping = None
        if hp.patience and validation_ds is not None:
            stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=hp.patience,
                                                     restore_best_weights=True)
            callbacks.append(stopping)
        started = time.perf_counter()
        with photo_errors():
            self.history = model.fit(train_ds.repeat(), epochs=hp.epochs, steps_per_epoch=steps_per_epoch,
                                     validation_data=validation_ds, verbose=0, shuffle=False, callbacks=callbacks)
        self.timings["fit_seconds"] = time.perf_counter() - started
        epochs_run = len(self.history.history["loss"])
        self.training_log = {"recipe": self.recipe, "epochs_run": epochs_run, "training_photos": training_count,
                             "validation_photos": validation_count,
                             "best_epoch": stopping.best_epoch + 1 if stopping else epochs_run,
                             "stopped_early": bool(stopping and stopping.stopped_epoch)}
        self._compile(self.model)
        return self.history

    def _training_sets(self, train_data: DataLoader, validation_data: DataLoader | None, cache_features: bool):
        """(the Keras model to fit, training set, validation set or None, their sizes): on cached features
        and the head alone when they cannot change, else on photos and the whole model. Without
        `validation_data`, the recipe's validation slice is carved from `train_data`, per label."""
        keep = None  # the training photos not carved off for validation
        if self.hparams.validation_fraction and validation_data is None:
            keep = train_data.split_mask(1 - self.hparams.validation_fraction, seed=self._shuffle_seed)
            keep = None if keep.all() else keep
        if not (cache_features and self.uses_feature_cache):
            if keep is not None:
                train_data, validation_data = train_data.subset(keep), train_data.subset(~keep)
            validation_ds = self._image_dataset(validation_data) if validation_data else None
            return (self.model, self._image_dataset(train_data, training=True), validation_ds, train_data.size,
                    validation_data.size if validation_data else 0)
        features, labels = self.features(train_data), train_data.labels
        validation = None
        if keep is not None:
            validation = (features[~keep], labels[~keep])
            features, labels = features[keep], labels[keep]
        elif validation_data:
            validation = (self.features(validation_data), validation_data.labels)
        validation_ds = self._feature_dataset(*validation) if validation else None
        return (self._head, self._feature_dataset(features, labels, training=True), validation_ds, len(labels),
                len(validation[1]) if validation else 0)

    def _image_dataset(self, data: DataLoader, training: bool = False):
        spec = self.model_spec
        return data.dataset(spec.input_size, spec.mean, spec.std, batch_size=self.hparams.batch_size,
                            augment=_augmenter(self.seed) if training and self.use_augmentation else None,
                            shuffle_seed=self._shuffle_seed if training and self.shuffle else None)

    @property
    def _shuffle_seed(self) -> int:
        return 0 if self.seed is None else self.seed

    def _feature_dataset(self, features: np.ndarray, labels: np.ndarray, training: bool = False):
        """Batches of (features, one-hot label), gathered by row number as they are needed. 50,000 photos'
        features are 256 MB, so they are not copied into TensorFlow (which transiently takes two copies)
        nor into a shuffle buffer (shuffling row numbers gives the order shuffling rows would).

        The rows are read through a weak reference that the dataset itself holds strongly: TensorFlow keeps
        every `numpy_function` of an eager `tf.data` pipeline for the life of the process, and the
        features must go when the training set does (before the export's own peak)."""
        source = _Rows(features, np.eye(self.num_classes, dtype=np.float32)[labels])
        reference, width = weakref.ref(source), features.shape[1]

        def rows(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            held = reference()
            return held.features[numbers], held.targets[numbers]

        def gather(numbers):
            batch, targets = tf.numpy_function(rows, [numbers], (tf.float32, tf.float32), stateful=False)
            batch.set_shape((None, width))
            targets.set_shape((None, self.num_classes))
            return batch, targets

        ds = tf.data.Dataset.range(len(features))
        if training and self.shuffle:
            ds = ds.shuffle(len(features), seed=self._shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.batch(self.hparams.batch_size).map(gather)
        ds.rows = source  # what `rows` reads lives as long as the dataset (and those made from it)
        return ds

    def features(self, data: DataLoader, batch_size: int | None = None) -> np.ndarray:
        """The backbone's output for every image, in one pass over the data: by the device's engine
        while the backbone keeps its ImageNet weights, else by TensorFlow."""
        spec = self.model_spec
        if not self.hparams.train_whole_model:
            computed = frozen_features.features(spec, data, self.features_ahead)
            if computed is not None:
                self.feature_counts["features_computed"] += computed.computed
                self.feature_counts["features_cached"] += computed.cached
                self.feature_counts["feature_pass_seconds"] = round(
                    self.feature_counts["feature_pass_seconds"] + computed.seconds, 2)
                return computed.rows
        batches = data.dataset(spec.input_size, spec.mean, spec.std, batch_size=batch_size or self.hparams.batch_size)
        with tqdm(total=data.size, desc="Extracting features", unit="img", disable=None, leave=False) as bar, \
                photo_errors():
            chunks = []
            for images, _ in batches:
                chunks.append(self._extract(images).numpy())
                bar.update(len(images))
        return np.concatenate(chunks)

    @functools.cached_property
    def _extract(self):
        """The backbone as one `tf.function` for every batch size and every call: tracing it costs as
        much as several batches, so training's features and the test photos' scores share one trace."""
        return tf.function(lambda images: self._backbone(images, training=False),
                           input_signature=[tf.TensorSpec((None, *self.input_size, 3), tf.float32)])

    def predict_scores(self, data: DataLoader, batch_size: int = 32) -> np.ndarray:
        """Float scores, one row per image of `data`, one column per label: the head on the backbone's features."""
        return self._head(self.features(data, batch_size), training=False).numpy()

    def evaluate(self, data: DataLoader, batch_size: int = 32) -> list[float]:
        """[loss, accuracy] of the float Keras model on `data`."""
        spec = self.model_spec
        ds = data.dataset(spec.input_size, spec.mean, spec.std, batch_size=batch_size)
        with photo_errors():
            return self.model.evaluate(ds, verbose=0)

    def predict_top_k(self, data: DataLoader, k: int = 1, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """The `k` most likely (label, score) pairs for each image of `data`."""
        scores = self.predict_scores(data, batch_size)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(self.index_to_label[i], float(row[i])) for i in top] for row, top in zip(scores, best)]

    def evaluate_tflite(self, tflite_filepath: str | os.PathLike, data: DataLoader) -> dict[str, float]:
        """{'accuracy': …} of an exported .tflite on `data`, run by the device's own classifier."""
        scores = tflite_scores(tflite_filepath, data)
        return {"accuracy": float(np.mean(scores.argmax(axis=1) == data.labels))}

    def summary(self) -> None:
        self.model.summary()

    def export(self, export_dir: str | os.PathLike, tflite_filename: str = "model.tflite",
               label_filename: str = "labels.txt", saved_model_filename: str = "saved_model",
               export_format=None, quantization_config="default", version: str = "v1") -> None:
        """Write the chosen formats to `export_dir` (default: the .tflite, labels embedded).

        `quantization_config` 'default' is Model Maker's: full integer, uint8 input and output,
        calibrated on the training images; None exports float32.
        """
        formats = _as_formats(export_format)
        export_dir = Path(export_dir)
        export_dir.mkdir(parents=True, exist_ok=True)
        if ExportFormat.TFLITE in formats:
            model = self.tflite_model(quantization_config, version)
            with atomic_write(export_dir / tflite_filename, "wb") as file:
                file.write(model)
        if ExportFormat.LABEL in formats:
            with atomic_write(export_dir / label_filename, "wb") as file:
                file.write(labels_txt.to_bytes(self.index_to_label))
        if ExportFormat.SAVED_MODEL in formats:
            save_saved_model(self.model, export_dir / saved_model_filename)

    def tflite_model(self, quantization_config="default", version: str = "v1") -> bytes:
        """The .tflite file's bytes, with metadata."""
        if quantization_config == "default":
            if self.representative_data is None:
                raise TrainingError("the default int8 export calibrates on the training photos, and this model "
                                    "has none: pass quantization_config=QuantizationConfig.for_int8(photos)")
            quantization_config = QuantizationConfig.for_int8(self.representative_data)
        spec = self.model_spec
        return tflite_with_metadata(self.model, self.index_to_label, spec.name, spec.input_size, spec.mean,
                                    spec.std, quantization_config, version)


def load(run_dir: str | os.PathLike) -> ImageClassifier:
    """The classifier a `trainer train` run kept in `run_dir`, ready to `export` again or `evaluate`,
    without training. An int8 export then needs calibration photos:
    `quantization_config=QuantizationConfig.for_int8(data)`."""
    run = saved_run.read(run_dir)
    return ImageClassifier(run.spec, run.labels, model=saved_run.load_keras(run))


@dataclass(frozen=True)
class _Rows:
    """A training set's features and one-hot labels, row by row."""

    features: np.ndarray
    targets: np.ndarray


def _parts(model) -> tuple:
    """(model, backbone, head) of a model built by `ImageClassifier._build`."""
    backbone, head = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return model, backbone, head


def _as_formats(export_format) -> tuple[ExportFormat, ...]:
    if export_format is None:
        return DEFAULT_EXPORT_FORMAT
    if isinstance(export_format, (str, ExportFormat)):
        export_format = [export_format]
    return tuple(ExportFormat(f) for f in export_format)


def _augmenter(seed: int | None):
    """Random flips, small rotations, zooms and shifts, applied to batches of normalized images."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.05, seed=seed),
        keras.layers.RandomZoom(0.1, seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
    ], name="augmentation")


class _EpochBar(keras.callbacks.Callback):
    """One progress bar over the epochs, showing the latest loss and accuracy."""

    def __init__(self, epochs: int):
        super().__init__()
        self._bar = tqdm(total=epochs, desc="Training", unit="epoch", disable=None, leave=False)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.set_postfix({k: f"{v:.3f}" for k, v in (logs or {}).items()}, refresh=False)
        self._bar.update(1)

    def on_train_end(self, logs=None):
        self._bar.close()
