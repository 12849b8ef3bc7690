"""`trainer metadata MODEL --labels labels.txt -o OUT`: label a bare .tflite from any tool.

Needs no TensorFlow: the metadata is written with `device.metadata` alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metadata", help="add labels and normalization to a .tflite model",
        description="Write image-classifier TFLite Metadata (labels, normalization, name, version) into a "
                    ".tflite model, as Model Maker did, so that bloomkit, the TFLite Task Library and MediaPipe "
                    "can all read it. Metadata the model already has is replaced, keeping its normalization, name, "
                "version, description, author and license unless given here.")
    parser.add_argument("model", type=Path, metavar="MODEL.tflite")
    parser.add_argument("--labels", type=Path, required=True, help="labels.txt: one label a line, in output order")
    parser.add_argument("--mean", type=float, nargs="+", metavar="M",
                        help="normalization mean, 1 or 3 values: the model expects (pixel - mean) / std "
                             "(default: the model's metadata, else the input's quantization when quantized, "
                             "else 127.5)")
    parser.add_argument("--std", type=float, nargs="+", metavar="S", help="normalization std (default: see --mean)")
    parser.add_argument("--name", help="model name (default: the metadata's, else the file's stem)")
    parser.add_argument("--version", help="model version (default: the metadata's, else v1)")
    parser.add_argument("--description",
                        help="what the model does (default: the metadata's, else Model Maker's sentence)")
    parser.add_argument("--author", help="author (default: the metadata's, else bloomkit)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.tflite", help="where to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.atomic import atomic_write
    from device.errors import UserError
    from device.metadata import read_model_info, write_metadata

    if (args.mean is None) != (args.std is None):
        raise UserError("give --mean and --std together, or neither")
    info = read_model_info(args.model, labels_file=args.labels)  # keeps the metadata's fields, if any
    mean, std = (args.mean, args.std) if args.mean else (_clean(info.mean), _clean(info.std))
    kept = {"license": info.license} if info.license else {}
    written = write_metadata(args.model.read_bytes(), info.labels, mean=mean, std=std,
                             name=args.name or info.name or args.model.stem,
                             version=args.version or info.version or "v1",
                             description=args.description or info.description,
                             author=args.author or info.author or "bloomkit", **kept)
    try:
        with atomic_write(args.output, "wb") as file:
            file.write(written)
    except OSError as error:
        raise UserError(f"cannot write {args.output}: {error.strerror or error}") from None
    print(f"wrote {args.output}: {len(info.labels)} labels, mean {_shown(mean)}, std {_shown(std)}")
    return 0


def _clean(values) -> list[float]:
    """Round to 6 significant digits: a float32 `1 / scale` such as 254.99998 is meant as 255."""
    return [float(f"{value:.6g}") for value in values]


def _shown(values: list[float]) -> str:
    return ", ".join(f"{value:g}" for value in values)
