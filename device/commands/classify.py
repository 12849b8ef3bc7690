"""`device classify FOLDER --model M`: classify every image under a folder into CSV or JSON Lines."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from device.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify", help="classify every image under a folder",
        description="Classify every image under FOLDER (recursively) and write one record per file: "
                    "CSV columns path, top1, score1, ..., topK, scoreK, latency_ms, error; or JSON Lines "
                    '{"path", "top": [{"label", "score"}], "latency_ms"} / {"path", "error"}. '
                    "Unreadable files are listed and skipped.")
    parser.add_argument("folder", type=Path, metavar="FOLDER")
    parser.add_argument("--model", type=Path, required=True, help="the .tflite model")
    parser.add_argument("--labels", type=Path, help="labels.txt, for a model without metadata")
    parser.add_argument("--out", type=Path, help="where to write the records (default: standard output)")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from --out's extension, else csv")
    parser.add_argument("--top-k", type=int, default=3, help="categories per image (default 3)")
    parser.add_argument("--threshold", type=float, default=0.0, help="drop categories scoring below this")
    parser.add_argument("--allow", action="append", metavar="LABELS", help="only these labels (comma-separated)")
    parser.add_argument("--deny", action="append", metavar="LABELS", help="never these labels (comma-separated)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: one per core)")
    parser.add_argument("--eval", action="store_true",
                        help="FOLDER has one sub-folder per label: report accuracy, recall and confusion")
    parser.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from device import classify
    from device.classifier import Classifier
    from device.metadata import labels as labels_txt

    if args.json and args.out is None:
        raise UserError("--json prints the summary on standard output: give --out for the records")
    record_format = classify.format_for(args.out, args.format)
    files = classify.list_files(args.folder, exclude=[args.out] if args.out else [])
    classifier = Classifier(args.model, labels_file=args.labels, threads=args.threads, top_k=args.top_k,
                            score_threshold=args.threshold, allow=labels_txt.from_options(args.allow or ()),
                            deny=labels_txt.from_options(args.deny or ()))
    if args.eval:
        classify.check_eval_layout(args.folder, files, classifier.labels)
    tally = classify.Tally(classifier.labels, evaluate=args.eval)
    with classify.records_output(args.out) as file, \
            tqdm(total=len(files), unit="img", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False) as progress:
        writer = classify.RecordWriter(file, record_format, args.top_k or len(classifier.labels))
        for result in classify.classify_files(classifier, args.folder, files):
            writer.write(result)
            tally.add(result)
            progress.update()
    summary = tally.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary, sys.stdout if args.out else sys.stderr)
    if summary["images"] == 0:
        raise UserError(f"{args.folder}: none of its {len(files)} files is a readable image")
    return 0


def _print_summary(summary: dict, out) -> None:
    say = lambda text="": print(text, file=out)  # noqa: E731
    say(f"classified {summary['images']} images in {summary['seconds']:.1f} s "
        f"({summary['images_per_second'] or 0:.1f} images/s)")
    counts = ", ".join(f"{label} {n}" for label, n in summary["labels"].items())
    say(f"top-1 counts: {counts}" + (f", no category {summary['unclassified']}" if summary["unclassified"] else ""))
    if summary["skipped"]:
        say(f"skipped {len(summary['skipped'])} files:")
        for skipped in summary["skipped"]:
            say(f"  {skipped['path']}: {skipped['error']}")
    if "accuracy" in summary:
        say(f"accuracy {summary['accuracy']:.4f}")
        say("recall: " + ", ".join(f"{label} {recall:.4f}" for label, recall in summary["recall"].items()))
        confusion = summary["confusion"]
        width = max(len(name) for name in confusion["columns"]) + 1
        say("confusion (rows: true label, columns: top-1):")
        say(" " * width + "".join(f"{name:>{width}}" for name in confusion["columns"]))
        for label, row in zip(confusion["labels"], confusion["matrix"]):
            say(f"{label:<{width}}" + "".join(f"{n:>{width}}" for n in row))
