"""`device bench MODEL --images DIR`: latency percentiles, images per second and peak memory."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from device.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure a model's latency and throughput on real photos",
        description="Measure invoke-only and end-to-end (decode + preprocess + invoke + postprocess) latency "
                    "percentiles after a warm-up, images per second through the `device classify` pipeline, "
                    "and peak memory.")
    parser.add_argument("model", type=Path, metavar="MODEL", help="the .tflite model")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="a folder of real photos like the ones the device will see (required)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: one per core)")
    parser.add_argument("--runs", type=int, default=100, help="timed images per measurement (default 100)")
    parser.add_argument("--labels", type=Path, help="labels.txt, for a model without metadata")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.images is None:
        raise UserError("device bench measures on real photos: give --images DIR "
                        "(a folder of pictures like the ones the device will classify)")
    from device import bench
    from device.classifier import Classifier
    from device.runtime import default_threads

    threads = default_threads() if args.threads is None else args.threads
    classifier = Classifier(args.model, labels_file=args.labels, threads=threads)
    results = bench.run(classifier, args.images, args.runs, threads)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{results['model']} on {results['runtime']}, {threads} threads, "
          f"{results['runs']} runs over {results['photos']} photos")
    for name, key in (("invoke", "invoke_ms"), ("end-to-end", "end_to_end_ms")):
        latency = results[key]
        print(f"  {name:<11} p50 {latency['p50']:7.2f} ms   p90 {latency['p90']:7.2f} ms   p99 {latency['p99']:7.2f} ms")
    print(f"  throughput  {results['images_per_second']:.1f} images/s (decoding overlapped with inference)")
    print(f"  peak memory {results['peak_rss_mb']:.0f} MB")
    return 0
