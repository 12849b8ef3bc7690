"""Trainer fixtures: one real training shared by the session, and small real photo folders.

`trained_model_path` (the tutorial's int8 export of flowers-mini) is meant for other areas too.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_PER_CLASS = 8


@pytest.fixture(scope="session")
def tutorial_run(flowers_dir, tmp_path_factory):
    """Model Maker's tutorial steps, unchanged but for the imports, on flowers-mini (the fast path)."""
    from trainer import DataLoader, image_classifier

    export_dir = tmp_path_factory.mktemp("tutorial-export")
    data = DataLoader.from_folder(flowers_dir)
    train_data, test_data = data.split(0.9)
    model = image_classifier.create(train_data)
    loss, accuracy = model.evaluate(test_data)
    model.export(export_dir=str(export_dir))
    return {"model": model, "train_data": train_data, "test_data": test_data, "loss": loss,
            "accuracy": accuracy, "export_dir": export_dir}


@pytest.fixture(scope="session")
def trained_model_path(tutorial_run) -> Path:
    """A real int8 (uint8 in and out) flowers model with bloomkit metadata, trained this session."""
    return tutorial_run["export_dir"] / "model.tflite"


@pytest.fixture(scope="session")
def tiny_flowers(flowers_dir, tmp_path_factory) -> Path:
    """8 real photos per flower label: enough to train and export in seconds."""
    root = tmp_path_factory.mktemp("tiny-flowers")
    for label_dir in sorted(p for p in flowers_dir.iterdir() if p.is_dir()):
        (root / label_dir.name).mkdir()
        for photo in sorted(label_dir.glob("*.jpg"))[:TINY_PER_CLASS]:
            shutil.copy(photo, root / label_dir.name / photo.name)
    return root


@pytest.fixture
def photo(flowers_dir) -> Path:
    """One real flower JPEG."""
    return sorted((flowers_dir / "daisy").glob("*.jpg"))[0]
