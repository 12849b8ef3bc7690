"""Our pipeline against outside references on every flowers-mini photo: the TFLite Task Library
(tflite-support's C++ ImageClassifier), and the trainer's evaluation of the same model."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from device import imaging
from device.classifier import Classifier
from device.cli import main

TASK_LIBRARY_TOP1 = """
import sys
from tflite_support.task import core, processor, vision
options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=sys.argv[1], num_threads=2),
                                        classification_options=processor.ClassificationOptions(max_results=1))
classifier = vision.ImageClassifier.create_from_options(options)
for path in sys.stdin.read().splitlines():
    result = classifier.classify(vision.TensorImage.create_from_file(path))
    print(result.classifications[0].categories[0].index)
"""


def all_photos(flowers_dir: Path) -> list[Path]:
    return sorted(flowers_dir.rglob("*.jpg"))


@pytest.mark.slow
def test_task_library_agrees_and_a_channel_swap_would_not(flowers_dir, reference_model, task_library_python):
    photos = all_photos(flowers_dir)
    ran = subprocess.run([str(task_library_python), "-c", TASK_LIBRARY_TOP1, str(reference_model)],
                         input="\n".join(map(str, photos)), capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-2000:]
    task_library = np.array([int(line) for line in ran.stdout.split()])
    classifier = Classifier(reference_model, threads=2)
    ours, swapped = [], []
    for photo in photos:
        rgb = imaging.decode(photo)
        ours.append(np.argmax(classifier.scores(rgb)))
        swapped.append(np.argmax(classifier.scores(np.ascontiguousarray(rgb[..., ::-1]))))
    agreement = np.mean(np.array(ours) == task_library)
    swapped_agreement = np.mean(np.array(swapped) == task_library)
    # Measured: 99.6 % (the Task Library decodes and resizes with its own code); BGR: 88 %.
    assert agreement >= 0.98
    assert swapped_agreement <= agreement - 0.05


@pytest.fixture
def evaluated_model(request, reference_model) -> tuple[Path, bool]:
    """The trainer's exported model when the trainer's fixture exists, else the reference model."""
    try:
        return Path(request.getfixturevalue("trained_model_path")), True
    except pytest.FixtureLookupError:
        return reference_model, False


@pytest.mark.slow
def test_device_classify_and_the_trainer_give_the_same_top1_on_every_photo(
        flowers_dir, evaluated_model, tmp_path, capsys):
    model, trained = evaluated_model
    out = tmp_path / "records.jsonl"
    assert main(["classify", str(flowers_dir), "--model", str(model), "--out", str(out), "--top-k", "1"]) == 0
    device_top1 = {r["path"]: r["top"][0]["label"] for r in map(json.loads, out.read_text().splitlines())}
    assert len(device_top1) == len(all_photos(flowers_dir))
    if trained:
        reference_top1 = _trainer_top1(model, flowers_dir)
    else:  # TF-free: the bare interpreter fed the trainer's pixels (imaging.load), argmax of its output
        reference_top1 = _bare_interpreter_top1(model, flowers_dir)
    disagreements = {path: (device_top1[path], label) for path, label in reference_top1.items()
                     if device_top1[path] != label}
    assert not disagreements


def _trainer_top1(model: Path, flowers_dir: Path) -> dict[str, str]:
    from trainer.data import DataLoader
    from trainer.tflite_eval import tflite_scores

    data = DataLoader.from_folder(flowers_dir, shuffle=False)
    scores = tflite_scores(model, data)
    return {Path(path).relative_to(flowers_dir).as_posix(): data.index_to_label[int(np.argmax(row))]
            for (path, _), row in zip(data.items, scores)}


def _bare_interpreter_top1(model: Path, flowers_dir: Path) -> dict[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    from device.metadata import read_model_info

    info = read_model_info(model)
    interpreter = Interpreter(model_path=str(model), num_threads=2)
    interpreter.allocate_tensors()
    (source,), (result,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["dtype"] == np.uint8 and source["quantization"] == (pytest.approx(1 / 255), 0)
    top1 = {}
    for photo in all_photos(flowers_dir):
        interpreter.set_tensor(source["index"], imaging.load(photo, info.input_size)[np.newaxis])
        interpreter.invoke()
        top1[photo.relative_to(flowers_dir).as_posix()] = info.labels[int(np.argmax(interpreter.get_tensor(result["index"])))]
    return top1
