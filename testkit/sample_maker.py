"""Samples as the daemon writes them (real flower JPEGs, through its own store), on a test host or in an inbox
as `fab collect` leaves it."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from device.samples import INBOX_MARKER, SampleStore, sample_name, utc_text

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def make_inbox(flowers_dir: Path, inbox: Path, count: int, host: str = "pi-1") -> list[str]:
    """`count` samples from `host` in an inbox; sample i's top label is the photo's own label, with top score
    0.3 + 0.06 i, so the most uncertain come first in the order written. Returns their keys (host/NAME)."""
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / INBOX_MARKER).touch()
    return [f"{host}/{name}" for name in write_samples(flowers_dir, inbox / host, count, host)]


def write_samples(flowers_dir: Path, folder: Path, count: int, host: str = "pi-1") -> list[str]:
    """`count` samples written into `folder` (made if need be); returns their names, oldest first."""
    store = SampleStore(folder, 10**12)
    store.open()
    start = datetime(2026, 11, 29, 6, 0, tzinfo=timezone.utc)
    names = []
    for i in range(count):
        label = LABELS[i % len(LABELS)]
        photo = sorted((flowers_dir / label).glob("*.jpg"))[(30 + i // len(LABELS)) % 100]
        jpeg = photo.read_bytes()
        top = round(0.3 + 0.06 * (i % 10), 4)
        rest = round((1 - top) / (len(LABELS) - 1), 4)
        scores = {name: (top if name == label else rest) for name in LABELS}
        when = start + timedelta(milliseconds=250 * i)
        name = sample_name(when, i + 1)
        store.write(name, jpeg, {
            "format": 1, "time": utc_text(when), "host": host, "source": "picamera2:0", "frame": i,
            "model": {"name": "efficientnet_lite0", "version": "v1", "sha256": "ab" * 32},
            "scores": scores, "top": {"label": label, "score": top}, "reasons": ["uncertain"],
            "image": {"file": name + ".jpg", "width": 0, "height": 0, "bytes": len(jpeg),
                      "sha256": hashlib.sha256(jpeg).hexdigest()},
        })
        names.append(name)
    return names
