"""`trainer export RUN_DIR --quantization Q -o OUT`: a new model.tflite from a saved run, without training."""
from __future__ import annotations

import argparse
from pathlib import Path

from trainer import quantization


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a trained run again, quantized another way, without training",
        description="Write a new model.tflite (labels and normalization embedded) from the model a "
                    "`trainer train` run kept in its export folder, quantized as asked. int8 calibrates on "
                    "photos: --data, else the run's own data folder.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --export-dir of a `trainer train` run")
    parser.add_argument("--quantization", choices=quantization.NAMES, required=True,
                        help="int8 (full integer, uint8 input and output), float16, dynamic, float32")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="photos to calibrate int8 on, one sub-folder per label (default: the run's data folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="the .tflite to write (in a folder: OUT/model.tflite)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from device.atomic import atomic_write
    from device.errors import UserError
    from trainer import export_folder, saved_run
    from trainer.data import load_folder

    run = saved_run.read(args.run_dir)  # before TensorFlow loads: not a run, another backbone version
    output = args.output / saved_run.MODEL_FILE if args.output.is_dir() else args.output
    _check_writable(output)
    photos = None
    if quantization.needs_calibration(args.quantization):
        folder = args.data or run.data_folder
        if folder is None or not folder.is_dir():
            gone = f" (the run's data folder {run.data_folder} is gone)" if folder is not None else ""
            raise UserError(f"int8 calibrates on photos: give --data DIR{gone}")
        photos = load_folder(folder)
    from trainer import image_classifier  # TensorFlow

    model = image_classifier.load(run.folder)
    written = model.tflite_model(quantization.by_name(args.quantization, photos))
    try:
        with atomic_write(output, "wb") as file:
            file.write(written)
    except OSError as error:
        if error.errno not in export_folder.DISK_ERRORS:
            raise
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    result = {"run_dir": os.fspath(run.folder), "model_path": os.fspath(output), "model_bytes": len(written),
              "quantization": args.quantization, "labels": run.labels}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {output} ({args.quantization}, {len(written) / 1e6:.2f} MB, {len(run.labels)} labels) "
              f"from {run.folder}")
    return 0


def _check_writable(output: Path) -> None:
    """Fail before converting, not after: a folder that is missing or read-only."""
    import tempfile

    from device.errors import UserError

    try:
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
