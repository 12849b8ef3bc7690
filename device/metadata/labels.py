"""labels.txt: one label a line, in the order of the model's output scores."""
from __future__ import annotations

from typing import Sequence

from device.metadata.errors import MetadataError


def parse(data: bytes) -> tuple[str, ...]:
    """Labels from a labels file, line i naming score i as the Task Library and MediaPipe read them.

    Blank lines at the end are dropped (they shift no index); a blank line inside is a label "".
    """
    lines = [line.removesuffix("\r") for line in data.decode("utf-8-sig").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(lines)


def to_bytes(labels: Sequence[str]) -> bytes:
    """A labels file as Model Maker wrote it: one label a line, no newline after the last."""
    for label in labels:
        if not label.strip() or "\n" in label or "\r" in label:
            raise MetadataError(f"label {label!r} is empty or spans lines")
    return "\n".join(labels).encode("utf-8")
