"""`device info MODEL`: what a .tflite model says about itself, and the runtime that would run it."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a model's labels, normalization and tensors",
        description="Show what a .tflite classifier carries in its TFLite Metadata (name, version, labels, "
                    "normalization) and its input and output tensors, and the runtime that would run it.")
    parser.add_argument("model", type=Path, metavar="MODEL", help="the .tflite model")
    parser.add_argument("--labels", type=Path, help="labels.txt, for a model without metadata")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.metadata import read_model_info

    info = read_model_info(args.model, labels_file=args.labels)
    report = {"model": str(args.model), **dataclasses.asdict(info), "input_size": info.input_size,
              "runtime": _runtime_name()}
    print(json.dumps(report) if args.json else _for_people(report))
    return 0


def _runtime_name() -> str:
    """The interpreter `device` would load the model with; `info` itself needs none."""
    try:
        from device.runtime import RuntimeMissingError, runtime_name
    except ImportError:
        return "unknown"
    try:
        return runtime_name()
    except RuntimeMissingError as error:
        return f"none ({error})"


def _for_people(report: dict) -> str:
    def tensor(facts: dict) -> str:
        text = f"{facts['name']}  {facts['dtype']} {list(facts['shape'])}"
        return text + (f"  scale {facts['scale']:.6g}, zero point {facts['zero_point']}" if facts["scale"] else "")

    rows = [
        ("model", report["model"]),
        ("name", report["name"] or "-"),
        ("version", report["version"] or "-"),
        ("description", report["description"] or "-"),
        ("author", report["author"] or "-"),
        ("license", report["license"] or "-"),
        ("metadata", f"parser {report['min_parser_version']}+" if report["has_metadata"] else "none"),
        ("input", tensor(report["input"])),
        ("output", tensor(report["output"])),
        ("normalization", f"mean {_numbers(report['mean'])}, std {_numbers(report['std'])}"),
        (f"labels ({len(report['labels'])})", ", ".join(report["labels"])),
        ("runtime", report["runtime"]),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _numbers(values) -> str:
    return "/".join(f"{value:g}" for value in values)
