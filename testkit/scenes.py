"""Scenes made of real photos for the events tests and benchmarks: a folder replayed in order, two pots side by side."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from device import imaging


def clearest_photos(model: Path, flowers_dir: Path, candidates: int = 10) -> dict[str, Path]:
    """For each label, the photo among its first few that the model is surest of: scenes that test the
    events, not the model's accuracy."""
    from device.classifier import Classifier

    classifier = Classifier(model, threads=1)
    best = {}
    for index, label in enumerate(classifier.labels):
        photos = sorted((flowers_dir / label).glob("*.jpg"))[:candidates]
        best[label] = max(photos, key=lambda path: classifier.scores(imaging.decode(path))[index])
    return best


def write_scene(folder: Path, shots: list[tuple[str, Path, int]]) -> Path:
    """A folder replayed in name order: each (name, photo, copies) is one photo shown for `copies` frames."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for name, photo, copies in shots:
        data = photo.read_bytes()
        for _ in range(copies):
            (folder / f"{index:04d}-{name}.jpg").write_bytes(data)
            index += 1
    return folder


def side_by_side(left: Path, right: Path, destination: Path, size: tuple[int, int] = (240, 240)) -> Path:
    """One frame with two photos next to each other: two flower pots in one camera view."""
    halves = [imaging.resize(imaging.decode(photo), size) for photo in (left, right)]
    cv2.imwrite(str(destination), cv2.cvtColor(np.hstack(halves), cv2.COLOR_RGB2BGR))
    return destination
