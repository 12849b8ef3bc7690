"""labels.txt: one label a line, in the order of the model's output scores."""
from __future__ import annotations

from typing import Sequence

from device.metadata.errors import MetadataError


def parse(data: bytes) -> tuple[str, ...]:
    """Labels from a labels file; blank lines are skipped, as the Task Library and MediaPipe do."""
    text = data.decode("utf-8-sig")
    return tuple(line.strip("\r") for line in text.split("\n") if line.strip())


def to_bytes(labels: Sequence[str]) -> bytes:
    """A labels file as Model Maker wrote it: one label a line, no newline after the last."""
    for label in labels:
        if not label.strip() or "\n" in label or "\r" in label:
            raise MetadataError(f"label {label!r} is empty or spans lines")
    return "\n".join(labels).encode("utf-8")
