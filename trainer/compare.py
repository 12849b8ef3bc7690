"""Two models on the same labelled photos: accuracy, per-label recall and its change, how often they agree,
which photos the new one fixes or breaks, and a contact sheet of the photos where they disagree.

The check before `fab deploy --canary`: both run on the device's engine, so the numbers are the Pi's.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from device import evaluation, imaging
from device.classifier import Classifier
from device.digest import sha256_file
from trainer.data import DataLoader
from trainer.tflite_eval import model_scores

SHEET_TILE = 180       # pixels of a thumbnail's longer side on the contact sheet
SHEET_COLUMNS = 6
SHEET_LIMIT = 60       # photos on one sheet; the rest are counted in its title
RIGHT, WRONG = (43, 138, 62), (201, 42, 42)


@dataclass(frozen=True)
class Predictions:
    """One model's top label and score for every photo, and the folder labels it has no output for."""

    labels: list[str]
    scores: list[float]
    missing: list[str]


def predictions(classifier: Classifier, data: DataLoader) -> Predictions:
    scores = model_scores(classifier, data)
    best = scores.argmax(axis=1)
    missing = sorted(set(data.index_to_label) - set(classifier.labels))
    return Predictions([classifier.labels[i] for i in best], [round(float(scores[row, i]), 4)
                                                                 for row, i in enumerate(best)], missing)


def comparison(old: Classifier, new: Classifier, old_path: Path, new_path: Path, data: DataLoader,
               before: Predictions, after: Predictions) -> dict:
    """The comparison as a JSON-ready dict (`trainer compare --json`)."""
    truth = [data.index_to_label[index] for index in data.labels]
    counts = {"old": _confusion(data, before), "new": _confusion(data, after)}
    scored = {which: evaluation.per_label(counts[which], data.index_to_label) for which in counts}
    per_label = {label: {"count": scored["old"][label]["support"],
                         "old_recall": scored["old"][label]["recall"], "new_recall": scored["new"][label]["recall"],
                         "delta": round(scored["new"][label]["recall"] - scored["old"][label]["recall"], 4),
                         "old_precision": scored["old"][label]["precision"],
                         "new_precision": scored["new"][label]["precision"]}
                 for label in data.index_to_label}
    old_right = np.array([p == t for p, t in zip(before.labels, truth)], dtype=bool)
    new_right = np.array([p == t for p, t in zip(after.labels, truth)], dtype=bool)
    disagree = [row for row in range(data.size) if before.labels[row] != after.labels[row]]
    return {
        "count": data.size,
        "old": _model(old, old_path, evaluation.accuracy(counts["old"]), before),
        "new": _model(new, new_path, evaluation.accuracy(counts["new"]), after),
        "agreement": _share(np.array(before.labels) == np.array(after.labels)),
        "fixed": int((~old_right & new_right).sum()),
        "broken": int((old_right & ~new_right).sum()),
        "per_label": per_label,
        "disagreements": [{"path": data.items[row][0], "truth": truth[row],
                           "old": before.labels[row], "old_score": before.scores[row],
                           "new": after.labels[row], "new_score": after.scores[row]} for row in disagree],
        "skipped": [{"path": path, "reason": reason} for path, reason in data.skipped],
    }


def _confusion(data: DataLoader, found: Predictions) -> np.ndarray:
    """counts[folder label, predicted label], with one more column for answers that are no folder label."""
    other = data.num_classes
    predicted = [data.index_to_label.index(label) if label in data.index_to_label else other
                 for label in found.labels]
    return evaluation.confusion_matrix(data.labels, predicted, other + 1)[:other]


def _model(classifier: Classifier, path: Path, accuracy: float, found: Predictions) -> dict:
    info = classifier.info
    return {"path": os.fspath(path), "name": info.name, "version": info.version, "sha256": sha256_file(path),
            "accuracy": accuracy, "missing_labels": found.missing}


def _share(flags: np.ndarray) -> float:
    return round(float(flags.mean()), 4) if flags.size else 0.0


def contact_sheet(disagreements: Sequence[dict]) -> bytes:
    """A PNG of the photos the models disagree on: each with its folder label and both models' answers
    (green when right, red when wrong)."""
    from PIL import Image, ImageDraw, ImageFont

    shown = list(disagreements[:SHEET_LIMIT])
    font = ImageFont.load_default(size=13)
    line = 17
    header = 30
    rows = (len(shown) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    tile_h = SHEET_TILE + 3 * line + 8
    sheet = Image.new("RGB", (SHEET_COLUMNS * (SHEET_TILE + 8) + 8, header + rows * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    more = f" (the first {len(shown)} shown)" if len(disagreements) > len(shown) else ""
    draw.text((8, 8), f"{len(disagreements)} photos where the models disagree{more}", fill="black", font=font)
    for number, entry in enumerate(shown):
        x = 8 + (number % SHEET_COLUMNS) * (SHEET_TILE + 8)
        y = header + (number // SHEET_COLUMNS) * tile_h
        try:
            photo = Image.fromarray(imaging.decode(entry["path"]))
        except imaging.ImageError:  # gone or changed since the models read it: the captions still say enough
            photo = Image.new("RGB", (SHEET_TILE, SHEET_TILE), "lightgray")
        photo.thumbnail((SHEET_TILE, SHEET_TILE))
        sheet.paste(photo, (x + (SHEET_TILE - photo.width) // 2, y + (SHEET_TILE - photo.height) // 2))
        text_y = y + SHEET_TILE + 2
        draw.text((x, text_y), f"label: {entry['truth']}", fill="black", font=font)
        for offset, which in ((1, "old"), (2, "new")):
            colour = RIGHT if entry[which] == entry["truth"] else WRONG
            draw.text((x, text_y + offset * line), f"{which}: {entry[which]} {entry[which + '_score']:.2f}",
                      fill=colour, font=font)
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()
