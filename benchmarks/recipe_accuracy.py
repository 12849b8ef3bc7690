"""Recipe accuracy: Model Maker's recipe against bloomkit's others, over split seeds, and what each part buys.

Three tables on flowers-mini (`--split 0.8`: 400 training, 100 test photos per seed):

- **runs**: whole `trainer train` runs, one per recipe and seed, each in its own process and timed from
  start to exit, recipes alternating: float and int8 test accuracy, epochs run, wall seconds.
- **ingredients** (`--ingredients`): the head alone, trained in this process on features computed once,
  adding one part of the early-stopping recipe at a time (float test accuracy; seconds of fitting).
- **tail** (`--tail`): the backbone's last convolution (`conv_head`, 320 -> 1280 channels, its BatchNorm
  frozen) fine-tuned with a new head on each seed's cached block-15 activations (7x7x320 a photo), the
  candidate that bought the most in docs/benchmarks-trainer.md, with the pooled features fed to the head
  as they are and L2-normalized (scaled by 10: a cosine classifier) (float test accuracy; fit seconds).

    .venv/bin/python benchmarks/recipe_accuracy.py [--seeds 6] [--ingredients | --tail] [--json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "flowers-mini"
RECIPES = ("model-maker", "early-stopping")


def run(recipe: str, seed: int, data: Path) -> dict:
    """One whole `trainer train` of `recipe` with split seed `seed`, in its own process."""
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "--data", str(data), "--split", "0.8",
                               "--seed", str(seed), "--recipe", recipe, "--export-dir", f"{scratch}/export", "--json"],
                              capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{recipe} seed {seed} failed:\n{done.stderr}")
    summary = json.loads(done.stdout.splitlines()[-1])
    return {"recipe": recipe, "seed": seed, "seconds": round(seconds, 1), "float": summary["float_accuracy"],
            "int8": summary["tflite_accuracy"], "epochs": summary["training"]["epochs_run"],
            "best_epoch": summary["training"]["best_epoch"]}


# One ingredient more per row: (name, the early-stopping recipe's hyper-parameters that row uses).
INGREDIENTS = (
    ("Model Maker (5 epochs, SGD 0.005)", {}),
    ("+ shuffled, 100 epochs", {"epochs": 100, "shuffle": True}),
    ("+ validation slice, early stopping, best weights", {"epochs": 100, "shuffle": True,
                                                          "validation_fraction": 0.1, "patience": 10}),
    ("+ cosine learning-rate decay (= early-stopping)", {"epochs": 100, "shuffle": True, "validation_fraction": 0.1,
                                                        "patience": 10, "cosine_decay": True}),
)


def ingredients(seeds: int, data_folder: Path) -> list[dict]:
    """The head alone on each seed's split, features computed once for all photos."""
    import numpy as np

    from trainer import frozen_features, image_classifier, model_spec
    from trainer.data import DataLoader
    from trainer.frozen_features import FeaturesAhead
    from trainer.recipes import HParams

    spec = model_spec.get("efficientnet_lite0")
    data = DataLoader.from_folder(data_folder)
    every = dict(zip((path for path, _ in data.items), frozen_features.features(spec, data).rows))
    rows = []
    for name, changes in INGREDIENTS:
        accuracies, seconds = [], []
        for seed in range(seeds):
            train, test = data.split(0.8, seed=seed)
            ahead = FeaturesAhead([(loader, _done(np.stack([every[path] for path, _ in loader.items])))
                                   for loader in (train, test)])
            classifier = image_classifier.ImageClassifier(spec, data.index_to_label, replace(HParams(), **changes),
                                                          seed=seed, features_ahead=ahead)
            classifier.train(train)
            accuracies.append(float(np.mean(classifier.predict_scores(test).argmax(axis=1) == test.labels)))
            seconds.append(classifier.timings["fit_seconds"])
        rows.append({"ingredient": name, "float": accuracies, "mean": round(statistics.mean(accuracies), 4),
                     "fit_seconds": round(statistics.mean(seconds), 2)})
    return rows


# The --tail rows: (name, the scale of the L2-normalized pooled features, or None to feed them as they are).
TAILS = (("conv_head fine-tuned", None), ("conv_head fine-tuned, features L2-normalized x10", 10.0))


def tail(seeds: int, data_folder: Path, epochs: int = 5, learning_rate: float = 1e-3) -> list[dict]:
    """conv_head and a new head fine-tuned per seed on block-15 activations computed once: Adam with a cosine
    decay, batch 32, label smoothing 0.1, dropout 0.2, L2 1e-4 on the head, no early stopping."""
    import numpy as np

    import trainer._quiet_tensorflow  # noqa: F401  (before TensorFlow)
    import keras
    from device import imaging
    from trainer import model_spec
    from trainer.data import DataLoader

    spec = model_spec.get("efficientnet_lite0")
    data = DataLoader.from_folder(data_folder)
    backbone = spec.feature_extractor()
    trunk = keras.Model(backbone.input, backbone.get_layer("blocks_15_bn2").output)
    images = [imaging.normalize(image, spec.mean, spec.std) for image in data.images(spec.input_size)]
    activations = np.concatenate([trunk.predict_on_batch(np.stack(images[start:start + 25]))
                                  for start in range(0, len(images), 25)])
    names = [layer.name for layer in backbone.layers]
    layers = [backbone.get_layer(name) for name in names[names.index("conv_head"):names.index("avg_pool") + 1]]
    imagenet = [layer.get_weights() for layer in layers]
    labels = np.eye(data.num_classes)[data.labels]
    rows = []
    for (name, scale), seed in itertools.product(TAILS, range(seeds)):
        keras.utils.set_random_seed(seed)
        for layer, weights in zip(layers, imagenet):  # the layers are shared: each seed starts from ImageNet's
            layer.set_weights(weights)
        inputs = keras.Input(activations.shape[1:])
        x = inputs
        for layer in layers:
            frozen = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = not frozen
            x = layer(x, training=False) if frozen else layer(x)
        if scale is not None:
            x = keras.layers.Rescaling(scale)(keras.layers.UnitNormalization()(x))
        x = keras.layers.Dropout(0.2)(x)
        model = keras.Model(inputs, keras.layers.Dense(data.num_classes, activation="softmax",
                                                       kernel_regularizer=keras.regularizers.L2(1e-4))(x))
        keep = data.split_mask(0.8, seed=seed)
        steps = int(keep.sum()) // 32
        model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)),
                      keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
        started = time.perf_counter()
        model.fit(activations[keep], labels[keep], batch_size=32, epochs=epochs, verbose=0, shuffle=True)
        seconds = time.perf_counter() - started
        predicted = model.predict_on_batch(activations[~keep]).argmax(axis=1)
        rows.append({"tail": name, "seed": seed, "float": float(np.mean(predicted == data.labels[~keep])),
                     "fit_seconds": round(seconds, 2)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--ingredients", action="store_true", help="the per-ingredient table instead of the runs")
    parser.add_argument("--tail", action="store_true", help="conv_head fine-tuned on cached activations instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.ingredients:
        rows = ingredients(args.seeds, args.data)
        if args.json:
            print(json.dumps(rows))
        for row in rows:
            print(f"{row['ingredient']:<52} mean {row['mean']:.3f}  per seed "
                  f"{' '.join(f'{a:.2f}' for a in row['float'])}  fit {row['fit_seconds']:.1f} s")
        return 0
    if args.tail:
        rows = tail(args.seeds, args.data)
        if args.json:
            print(json.dumps(rows))
            return 0
        for name, _ in TAILS:
            accuracies = [row["float"] for row in rows if row["tail"] == name]
            print(f"{name:<52} mean {statistics.mean(accuracies):.3f}  per seed "
                  f"{' '.join(f'{a:.2f}' for a in accuracies)}  fit "
                  f"{statistics.mean(row['fit_seconds'] for row in rows if row['tail'] == name):.1f} s")
        return 0
    runs = []
    for seed in range(args.seeds):
        for recipe in RECIPES[::-1] if seed % 2 else RECIPES:  # alternate, so a changing load weighs on both
            runs.append(run(recipe, seed, args.data))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(runs))
        return 0
    by = {(r["recipe"], r["seed"]): r for r in runs}
    print("| seed | " + " | ".join(f"{r} float | {r} int8 | {r} epochs | {r} s" for r in RECIPES) + " |")
    print("| --- " * (1 + 4 * len(RECIPES)) + "|")
    for seed in range(args.seeds):
        cells = [f"{by[r, seed]['float']:.2f} | {by[r, seed]['int8']:.2f} | {by[r, seed]['epochs']} | "
                 f"{by[r, seed]['seconds']:.1f}" for r in RECIPES]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    means = [f"{statistics.mean(by[r, s]['float'] for s in range(args.seeds)):.3f} | "
             f"{statistics.mean(by[r, s]['int8'] for s in range(args.seeds)):.3f} | | "
             f"{statistics.median(by[r, s]['seconds'] for s in range(args.seeds)):.1f} (median)" for r in RECIPES]
    print("| mean | " + " | ".join(means) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
