"""Trainer fixtures: small real photo folders (the shared training run is in tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import copy_photos

TINY_PER_CLASS = 8


@pytest.fixture(scope="session")
def tiny_flowers(flowers_dir, tmp_path_factory) -> Path:
    """8 real photos per flower label: enough to train and export in seconds."""
    return copy_photos(flowers_dir, tmp_path_factory.mktemp("tiny-flowers"), TINY_PER_CLASS)


@pytest.fixture
def photo(flowers_dir) -> Path:
    """One real flower JPEG."""
    return sorted((flowers_dir / "daisy").glob("*.jpg"))[0]
