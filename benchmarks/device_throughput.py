"""Whole-command throughput of `device classify` against the TFLite Task Library and this machine's limit.

    .venv/bin/python benchmarks/device_throughput.py [--model M] [--images DIR] [--threads 2] [--rounds 3]

Measured in the same run, interleaved round by round (the machine is shared: medians, and the best
round of each, the least disturbed, are reported):
- `device classify` as a user runs it (a fresh process, model load and output included), on
  ai-edge-litert (this venv) and on tflite-runtime 2.14 (a numpy<2 venv in .venvs/, made on first use);
- tflite-support 0.4.4's Task Library ImageClassifier (C++) over the same photos, model and threads,
  also a fresh process timed whole (its venv is made by scripts/make-tflite-support-venv);
- the machine's limit: cores / (single-thread decode + preprocess time + single-thread invoke time)
  per image, each measured on its own.
Write-up: docs/benchmarks-device.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "model-maker-flowers-int8.tflite"
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "flowers-mini"
VENVS = REPO / ".venvs"
TASK_LIBRARY = """
import sys, time
from tflite_support.task import core, processor, vision
model, threads, paths = sys.argv[1], int(sys.argv[2]), sys.stdin.read().splitlines()
options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=model, num_threads=threads),
                                        classification_options=processor.ClassificationOptions(max_results=3))
classifier = vision.ImageClassifier.create_from_options(options)
start = time.perf_counter()
for path in paths:
    classifier.classify(vision.TensorImage.create_from_file(path))
print(len(paths) / (time.perf_counter() - start))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-legacy", action="store_true", help="skip the tflite-runtime venv")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    photos = sorted(str(p) for p in args.images.rglob("*") if p.is_file() and not p.name.startswith("."))
    contenders = {"device classify, ai-edge-litert": sys.executable,
                  "Task Library ImageClassifier (C++)": task_library_python()}
    if not args.no_legacy:
        contenders["device classify, tflite-runtime"] = legacy_python()
    runs: dict[str, list[dict]] = {name: [] for name in [*contenders, "machine limit"]}
    for number in range(1, args.rounds + 1):
        for name, python in contenders.items():
            if name.startswith("Task Library"):
                runs[name].append(task_library(python, args.model, args.threads, photos))
            else:
                runs[name].append(device_classify(python, args.model, args.threads, args.images, len(photos)))
            print(f"round {number}/{args.rounds}: {name}: {json.dumps(runs[name][-1])}", file=sys.stderr)
        runs["machine limit"].append(machine_limit(args.model, photos))
        print(f"round {number}/{args.rounds}: machine limit: {json.dumps(runs['machine limit'][-1])}", file=sys.stderr)

    results = {name: {key: round(statistics.median(run[key] for run in rounds), 2) for key in rounds[0]}
               for name, rounds in runs.items()}
    for name, rounds in runs.items():  # the least disturbed round: on a shared machine, the closest to quiet
        results[name]["best_images_per_second"] = round(max(
            run.get("whole_command_images_per_second", run.get("images_per_second")) for run in rounds), 2)
    results["settings"] = {"model": str(args.model), "photos": len(photos), "threads": args.threads,
                           "rounds": args.rounds, "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(results))
        return
    report(results)


def device_classify(python: str, model: Path, threads: int, images: Path, count: int) -> dict:
    """A fresh `device classify` process, timed whole; also its own in-run images per second."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [python, "-m", "device.cli", "classify", str(images), "--model", str(model),
                   "--threads", str(threads), "--out", f"{scratch}/records.csv", "--json"]
        start = time.perf_counter()
        ran = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
    summary = json.loads(ran.stdout)
    return {"whole_command_images_per_second": count / elapsed,
            "in_run_images_per_second": summary["images_per_second"]}


def task_library(python: str, model: Path, threads: int, photos: list[str]) -> dict:
    start = time.perf_counter()
    ran = subprocess.run([python, "-c", TASK_LIBRARY, str(model), str(threads)], input="\n".join(photos),
                         capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    return {"whole_command_images_per_second": len(photos) / elapsed,
            "in_run_images_per_second": float(ran.stdout.split()[-1])}


def machine_limit(model: Path, photos: list[str]) -> dict:
    """cores / (decode + preprocess + invoke per image), each part timed alone on one thread."""
    from device import imaging
    from device.classifier import Classifier

    classifier = Classifier(model, threads=1)
    start = time.perf_counter()
    tensors = [classifier.prepare(imaging.decode(photo)) for photo in photos]
    prepare_ms = (time.perf_counter() - start) * 1000 / len(photos)
    for tensor in tensors[:5]:
        classifier.infer(tensor)
    start = time.perf_counter()
    for tensor in tensors:
        classifier.infer(tensor)
    invoke_ms = (time.perf_counter() - start) * 1000 / len(tensors)
    cores = len(os.sched_getaffinity(0))
    return {"decode_preprocess_ms": prepare_ms, "invoke_1_thread_ms": invoke_ms,
            "images_per_second": cores * 1000 / (prepare_ms + invoke_ms)}


def task_library_python() -> str:
    subprocess.run([str(REPO / "scripts" / "make-tflite-support-venv")], check=True)
    return str(VENVS / "tflite-support" / "bin" / "python")


def legacy_python() -> str:
    """A venv with the `device-legacy` extra's packages (tflite-runtime 2.14 needs numpy<2); repo on PYTHONPATH."""
    venv = VENVS / "tflite-runtime"
    python = venv / "bin" / "python"
    probe = "import tflite_runtime, numpy, cv2, PIL, tqdm, flatbuffers"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return str(python)
    with open(REPO / "pyproject.toml", "rb") as file:
        packages = tomllib.load(file)["project"]["optional-dependencies"]["device-legacy"]
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
    return str(python)


def report(results: dict) -> None:
    settings = results.pop("settings")
    limit = results.pop("machine limit")
    print(f"{settings['photos']} photos, {settings['threads']} threads, {settings['cores']} cores, "
          f"{settings['rounds']} rounds")
    print(f"machine limit: median {limit['images_per_second']:.1f} images/s, best {limit['best_images_per_second']:.1f} "
          f"(decode+preprocess {limit['decode_preprocess_ms']:.2f} ms + invoke {limit['invoke_1_thread_ms']:.2f} ms "
          f"on one thread, medians)")
    print(f"{'':38}{'whole command':>14}{'in run':>9}{'of limit':>10}{'best':>9}{'of best':>9}")
    for name, numbers in results.items():
        whole, best = numbers["whole_command_images_per_second"], numbers["best_images_per_second"]
        print(f"{name:38}{whole:>12.1f}/s{numbers['in_run_images_per_second']:>7.1f}/s"
              f"{whole / limit['images_per_second']:>10.0%}{best:>7.1f}/s{best / limit['best_images_per_second']:>9.0%}")

if __name__ == "__main__":
    main()
