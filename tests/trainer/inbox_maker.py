"""Inboxes as `fab collect` leaves them: real flower JPEGs written as samples by the daemon's own store."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from device.samples import INBOX_MARKER, SampleStore, sample_name, utc_text

LABELS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def make_inbox(flowers_dir: Path, inbox: Path, count: int, host: str = "pi-1") -> list[str]:
    """`count` samples on `host`; sample i's top label is the photo's own label, with top score 0.3 + 0.06 i,
    so the most uncertain come first in the order written. Returns their keys (host/NAME) in that order."""
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / INBOX_MARKER).touch()
    store = SampleStore(inbox / host, 10**9)
    store.open()
    start = datetime(2026, 11, 29, 6, 0, tzinfo=timezone.utc)
    keys = []
    for i in range(count):
        label = LABELS[i % len(LABELS)]
        photo = sorted((flowers_dir / label).glob("*.jpg"))[30 + i // len(LABELS)]
        jpeg = photo.read_bytes()
        top = round(0.3 + 0.06 * i, 4)
        rest = round((1 - top) / (len(LABELS) - 1), 4)
        scores = {name: (top if name == label else rest) for name in LABELS}
        when = start + timedelta(seconds=i)
        name = sample_name(when, i + 1)
        store.write(name, jpeg, {
            "format": 1, "time": utc_text(when), "host": host, "source": "picamera2:0", "frame": i,
            "model": {"name": "efficientnet_lite0", "version": "v1", "sha256": "ab" * 32},
            "scores": scores, "top": {"label": label, "score": top}, "reasons": ["uncertain"],
            "image": {"file": name + ".jpg", "width": 0, "height": 0, "bytes": len(jpeg),
                      "sha256": hashlib.sha256(jpeg).hexdigest()},
        })
        keys.append(f"{host}/{name}")
    return keys
