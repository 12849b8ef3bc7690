"""`trainer compare OLD.tflite NEW.tflite --data DIR`: two models on the same photos, before a deploy.

Runs both with the device's own engine, so it needs no TensorFlow.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SHEET = Path("disagreements.png")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare two .tflite models on the same labelled photos",
        description="Classify every photo of DIR (one sub-folder per label) with both models through the "
                    "device's interpreter: accuracy, per-label recall and its change, how often they agree, "
                    "what the new model fixes and breaks, and a contact sheet of the photos they disagree on.")
    parser.add_argument("old", type=Path, metavar="OLD.tflite")
    parser.add_argument("new", type=Path, metavar="NEW.tflite")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="one sub-folder of photos per label")
    parser.add_argument("--sheet", type=Path, default=DEFAULT_SHEET, metavar="FILE.png",
                        help=f"the contact sheet of disagreements (default: {DEFAULT_SHEET})")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from device.atomic import atomic_write
    from device.errors import UserError
    from trainer.compare import comparison, contact_sheet, predictions
    from trainer.data import load_folder
    from trainer.tflite_eval import open_model

    old, new = open_model(args.old), open_model(args.new)
    data = load_folder(args.data)
    result = comparison(old, new, args.old, args.new, data, predictions(old, data), predictions(new, data))
    result["sheet"] = None
    if result["disagreements"]:
        try:
            with atomic_write(args.sheet, "wb") as file:
                file.write(contact_sheet(result["disagreements"]))
        except OSError as error:
            raise UserError(f"cannot write --sheet {args.sheet}: {error.strerror or error}") from None
        result["sheet"] = str(args.sheet)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


def _print(result: dict) -> None:
    old, new = result["old"], result["new"]
    width = max(len(label) for label in result["per_label"]) + 2
    print(f"{result['count']} photos: accuracy {old['accuracy']:.3f} (old) -> {new['accuracy']:.3f} (new), "
          f"agreement {result['agreement']:.3f}; the new model fixes {result['fixed']} and breaks {result['broken']}")
    print(f"{'label':<{width}}{'photos':>7}{'old':>8}{'new':>8}{'change':>9}")
    for label, row in result["per_label"].items():
        print(f"{label:<{width}}{row['count']:>7}{row['old_recall']:>8.3f}{row['new_recall']:>8.3f}"
              f"{row['delta']:>+9.3f}")
    for which, model in (("old", old), ("new", new)):
        if model["missing_labels"]:
            print(f"the {which} model has no label {', '.join(model['missing_labels'])}: its photos count as wrong")
    if result["sheet"]:
        print(f"the {len(result['disagreements'])} photos they disagree on: {result['sheet']}")
