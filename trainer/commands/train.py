"""`trainer train`: the Model Maker tutorial as one command — load, split, train, export, evaluate, report."""
from __future__ import annotations

import argparse
from pathlib import Path

from trainer import quantization, recipes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train and export an image classifier",
        description="Train an image classifier on a folder with one sub-folder of photos per label (default: "
                    "TensorFlow's flower_photos, downloaded once), export model.tflite with its labels and "
                    "normalization embedded, check it with the device's own interpreter on the held-out photos, "
                    "and write report.json and plots beside it.")
    parser.add_argument("--data", type=Path, metavar="DIR", help="one sub-folder of photos per label")
    parser.add_argument("--split", default="0.9", metavar="FRACTION",
                        help="fraction of each label's photos to train on; the rest tests (default 0.9)")
    parser.add_argument("--model-spec", default="efficientnet_lite0",
                        help="backbone: efficientnet_lite0 (default), efficientnet_lite1, efficientnet_lite2")
    parser.add_argument("--recipe", choices=tuple(recipes.RECIPES), default=None,
                        help=f"how to train: {recipes.DEFAULT_RECIPE} (default), or "
                             f"{', '.join(name for name in recipes.RECIPES if name != recipes.DEFAULT_RECIPE)}; "
                             "model-maker is TFLite Model Maker's recipe, exactly")
    parser.add_argument("--epochs", type=int, help="epochs (with early stopping, the most); default: the recipe's")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's (32)")
    parser.add_argument("--quantization", choices=quantization.NAMES, default="int8",
                        help="int8 (default: full integer, uint8 input and output), float16, dynamic, float32")
    parser.add_argument("--export-dir", type=Path, default=Path("export"), metavar="DIR",
                        help="where model.tflite, labels.txt, the report and the saved model go, replacing "
                             "an earlier export there as a whole once the new one is complete (default: export)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split and training (default 0)")
    parser.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    parser.add_argument("--rerun-backbone", action="store_true",
                        help="re-run the frozen backbone on every batch of every epoch, as Model Maker did, "
                             "instead of computing each photo's features once (slower; for comparisons)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from device.errors import UserError
    from trainer import export_folder, frozen_features, model_spec, saved_run
    from trainer.data import check_batch_fits, load_folder
    from trainer.datasets import DatasetUnavailable, flower_photos

    started = time.perf_counter()
    fraction = _fraction(args.split)
    for option, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1, not {value}")
    spec = model_spec.get(args.model_spec)  # an unknown name fails here, before any data is read
    export_folder.check(args.export_dir, saved_run.FILES)
    if args.data is None:
        try:
            args.data = flower_photos()
        except DatasetUnavailable as error:
            raise UserError(str(error)) from None
    export_folder.check_outside(args.export_dir, args.data)
    with export_folder.staged(args.export_dir) as staging:  # replaces the export only once it is complete
        data = load_folder(args.data)
        train_data, test_data = data.split(fraction, seed=args.seed)
        if test_data.size == 0:
            raise UserError(f"--split {args.split} leaves no photos to test on: lower it or add photos")
        _, hparams = recipes.resolve(args.recipe, {"epochs": args.epochs, "batch_size": args.batch_size})
        check_batch_fits(train_data, hparams.batch_size)
        ahead = None if args.rerun_backbone else frozen_features.start(spec, [train_data, test_data])
        from trainer.training_run import train_export_evaluate  # TensorFlow loads while the features compute

        summary = train_export_evaluate(train_data, test_data, spec, args.recipe, args.epochs, args.batch_size,
                                        args.quantization, args.export_dir, args.seed, data_folder=args.data,
                                        started=started, cache_features=not args.rerun_backbone,
                                        features_ahead=ahead, write_to=staging)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def _fraction(text: str) -> float:
    from device.errors import UserError

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise UserError(f"--split must be a fraction between 0 and 1 (such as 0.9), not {text!r}")
    return value


def _print_summary(summary: dict) -> None:
    print(f"data: {summary['train_count']} photos to train on, {summary['test_count']} to test, "
          f"{len(summary['labels'])} labels ({', '.join(summary['labels'])}), {len(summary['skipped'])} skipped")
    log = summary["training"]
    epochs = f"{log['epochs_run']} epoch" + ("s" if log["epochs_run"] != 1 else "")
    stopped = (f", stopped early; kept epoch {log['best_epoch']} (best on {log['validation_photos']} validation photos)"
               if log["stopped_early"] else "")
    print(f"trained {summary['model_spec']} ({log['recipe']} recipe) for {epochs}{stopped} "
          f"in {summary['timings']['train']:.1f} s")
    print(f"features: {summary['features_computed']} computed, {summary['features_cached']} from the cache")
    print(f"test accuracy: float model {summary['float_accuracy']:.3f}, "
          f"{Path(summary['model_path']).name} ({summary['quantization']}) {summary['tflite_accuracy']:.3f}")
    print(f"exported {summary['model_path']} ({summary['model_bytes'] / 1e6:.2f} MB); "
          f"report in {summary['report_path']} ({summary['seconds']:.0f} s in all)")
