"""Label lists: labels.txt (one label a line, in the order of the model's output scores) and --allow/--deny."""
from __future__ import annotations

from typing import Iterable, Sequence

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


def from_options(values: Iterable[str]) -> tuple[str, ...]:
    """Label names from a repeatable option such as --allow, each value naming one or more, comma-separated."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())
