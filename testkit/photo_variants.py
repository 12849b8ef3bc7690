"""Bigger photo folders made from a small one: each photo, then new JPEGs of it cropped, mirrored and rescaled.

Every variant has different pixels, so different features: a set of N variants per photo costs the
trainer what N times as many real photos would. Benchmarks and tests of scale use it; a folder made once
is reused (a marker file says it is complete), since 50,000 JPEGs take a while to write.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CROPS = (0.95, 0.9, 0.8, 0.7)                 # the side kept, as a fraction of the photo's
PLACES = ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5))  # where the crop sits: corners, then the centre
SCALES = (1.0, 0.75, 1.25)
# Variant n >= 1 of a photo is the (n - 1)th of these: 120 different photos from each one.
RECIPES = tuple(itertools.product(CROPS, PLACES, SCALES, (True, False)))
MARKER = ".complete"


def variant_folder(source: Path, destination: Path, variants: int) -> Path:
    """`destination`, holding one sub-folder per label of `source` with `variants` photos for each photo
    of it (the photo itself, then its variants): made now unless an earlier call completed it."""
    marker = destination / MARKER
    if marker.is_file() and marker.read_text() == _stamp(source, variants):
        return destination
    if not 1 <= variants <= len(RECIPES) + 1:
        raise ValueError(f"variants must be between 1 and {len(RECIPES) + 1}, not {variants}")
    shutil.rmtree(destination, ignore_errors=True)
    photos = sorted(source.glob("*/*.jpg"))
    for label in {photo.parent.name for photo in photos}:
        (destination / label).mkdir(parents=True)
    spawn = multiprocessing.get_context("spawn")  # forking a process that runs threads (TensorFlow's) can hang
    with ProcessPoolExecutor(os.cpu_count(), mp_context=spawn) as pool:
        list(pool.map(_write_variants, photos, itertools.repeat(destination), itertools.repeat(variants),
                      chunksize=8))
    marker.write_text(_stamp(source, variants))
    return destination


def _stamp(source: Path, variants: int) -> str:
    return f"{source.resolve()} x{variants} {RECIPES!r}"


def _write_variants(photo: Path, destination: Path, variants: int) -> None:
    from PIL import Image, ImageOps

    folder = destination / photo.parent.name
    shutil.copy(photo, folder / photo.name)
    with Image.open(photo) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    for number, (crop, (x, y), scale, mirror) in enumerate(RECIPES[: variants - 1], start=1):
        kept_width, kept_height = round(width * crop), round(height * crop)
        left, top = round((width - kept_width) * x), round((height - kept_height) * y)
        made = image.crop((left, top, left + kept_width, top + kept_height))
        if scale != 1.0:
            made = made.resize((max(1, round(kept_width * scale)), max(1, round(kept_height * scale))),
                               Image.Resampling.BILINEAR)
        if mirror:
            made = ImageOps.mirror(made)
        made.save(folder / f"{photo.stem}-v{number}.jpg", quality=90)
