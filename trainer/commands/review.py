"""`trainer review INBOX --data DATASET`: label the samples `fab collect` brought home, on a local page.

Also the way in and out of Label Studio: `--export-label-studio tasks.json`, `--import-label-studio export.json`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "review", help="label collected samples on a local page (or through Label Studio)",
        description="Show the samples in INBOX (filled by `fab collect`) most uncertain first, with the model's "
                    "scores: a key accepts the predicted label (Enter), picks another (1-9), discards (x), undoes "
                    "(u) or makes a new label (n). Accepted photos are copied into DATASET/<label>/, named by "
                    "their content hash; every decision is logged in INBOX, so no sample is shown twice.")
    parser.add_argument("inbox", type=Path, nargs="?", metavar="INBOX", help="the folder fab collect fills")
    parser.add_argument("--data", type=Path, metavar="DATASET", help="the photo folder to file accepted photos into")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the page's port on 127.0.0.1 "
                                                                       f"(default {DEFAULT_PORT}; 0: any free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    parser.add_argument("--export-label-studio", type=Path, metavar="tasks.json",
                        help="write the samples as Label Studio tasks, the model's answer pre-annotated, and exit")
    parser.add_argument("--import-label-studio", type=Path, metavar="export.json",
                        help="file a Label Studio JSON export into DATASET, and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.errors import UserError
    from trainer.inbox import Dataset, Inbox

    if args.export_label_studio and args.import_label_studio:
        raise UserError("--export-label-studio and --import-label-studio: one at a time")
    if args.inbox is None and not args.import_label_studio:
        raise UserError("give the INBOX to review (the folder fab collect fills)")
    inbox = Inbox(args.inbox) if args.inbox is not None else None
    if args.export_label_studio:
        return _export(inbox, args)
    if args.data is None:
        raise UserError("give --data DATASET: the photo folder accepted photos are filed into")
    dataset = Dataset(args.data)
    if args.import_label_studio:
        return _import(args.import_label_studio, dataset, inbox)
    return _serve(inbox, dataset, args)


def _export(inbox, args: argparse.Namespace) -> int:
    from trainer.inbox import Dataset
    from trainer.label_studio import export_tasks

    labels = Dataset(args.data).labels() if args.data else []
    count, config = export_tasks(inbox, args.export_label_studio, labels)
    print(f"wrote {count} tasks to {args.export_label_studio} and the labeling config to {config}")
    print(f"serve the images: LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
          f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={inbox.folder.resolve()} label-studio")
    return 0


def _import(path: Path, dataset, inbox) -> int:
    from trainer.label_studio import import_export

    counts = import_export(path, dataset, inbox)
    print(f"filed {counts['filed']} photos into {dataset.folder} ({counts['duplicates']} already there); "
          f"{counts['unlabelled']} tasks without a label, {counts['already_decided']} decided before, "
          f"{counts['missing']} whose sample is not in the inbox")
    return 0


def _serve(inbox, dataset, args: argparse.Namespace) -> int:
    import webbrowser

    from trainer.review import Review, ReviewServer

    review = Review(inbox, dataset)
    for key, note in review.skipped:
        print(f"trainer: note: skipping {key}: {note}")
    server = ReviewServer(review, args.port)
    print(f"{len(review.queue)} samples to review on {server.url} (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    done = review.done
    print(f"accepted {done['accepted']}, discarded {done['discarded']}, undid {done['undone']}; "
          f"{len(review.queue)} left to review")
    return 0
