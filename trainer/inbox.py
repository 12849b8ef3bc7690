"""The inbox `fab collect` fills (INBOX/<host>/NAME.jpg + NAME.json), the decisions taken on its samples, and
the dataset accepted photos are filed into.

Every decision is a line in INBOX/review-log.jsonl, appended and synced, so a sample decided once (on the
review page or in Label Studio) never comes back, and undo is a line too: the log is the history.
Accepted photos go to DATASET/<label>/<sha256>.jpg: named by content, a photo already in the dataset
under any name is a duplicate, and nothing there is ever overwritten.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from device.digest import sha256_file
from device.errors import UserError
from device.samples import IMAGE, INBOX_MARKER, SIDECAR, SampleError, read_sample

LOG = "review-log.jsonl"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LABEL_NAME = re.compile(r"[^./\\\s][^/\\]*")


class InboxError(UserError):
    """An inbox or a dataset that cannot be used (missing, not an inbox, read-only)."""


@dataclass(frozen=True)
class Sample:
    """One whole sample: `key` is host/NAME, unique in the inbox."""

    key: str
    image: Path
    sidecar: dict
    sha256: str

    @property
    def top(self) -> tuple[str, float]:
        top = self.sidecar.get("top") or {}
        if "label" in top:
            return top["label"], float(top["score"])
        label, score = max(self.sidecar["scores"].items(), key=lambda item: item[1])
        return label, float(score)

    @property
    def margin(self) -> float:
        best = sorted(self.sidecar["scores"].values(), reverse=True)[:2] + [0.0]
        return float(best[0] - best[1])


class Inbox:
    """The samples of INBOX and the log of what was decided about them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not folder.is_dir():
            raise InboxError(f"inbox {folder}: no such folder")
        if not (folder / INBOX_MARKER).exists() and not any(self._sidecars()):
            raise InboxError(f"{folder} is not an inbox: no samples (<host>/NAME.json and NAME.jpg) in it; "
                             "fill one with `fab collect --inbox DIR`")
        self.log = folder / LOG

    def _sidecars(self) -> Iterator[Path]:
        for host in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from sorted(p for p in host.iterdir() if p.suffix == SIDECAR and not p.name.startswith("."))

    def scan(self) -> tuple[list[Sample], list[tuple[str, str]]]:
        """(whole samples not decided yet, most uncertain first; (key, note) of the samples that are not whole)."""
        decided = self.decided()
        samples, skipped = [], []
        seen = set()
        for sidecar in self._sidecars():
            key = f"{sidecar.parent.name}/{sidecar.stem}"
            seen.add(key)
            if key in decided:
                continue
            try:
                meta, jpeg = read_sample(sidecar.parent, sidecar.stem)
            except SampleError as error:
                skipped.append((key, str(error).partition(": ")[2] or str(error)))
                continue
            samples.append(Sample(key, sidecar.with_suffix(IMAGE), meta, meta["image"]["sha256"]))
        for host in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for image in sorted(host.glob("*" + IMAGE)):
                key = f"{host.name}/{image.stem}"
                if key not in seen and key not in decided and not image.name.startswith("."):
                    skipped.append((key, "a JPEG without its sidecar (half-copied?)"))
        samples.sort(key=lambda s: (s.top[1], s.margin, s.key))
        return samples, skipped

    def entries(self) -> list[dict]:
        try:
            lines = self.log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line cut short by a crash is no decision
                entries.append(json.loads(line))
        return entries

    def history(self) -> list[dict]:
        """The decisions in force, oldest first: each accept or discard not undone since."""
        stack: list[dict] = []
        for entry in self.entries():
            if entry.get("action") == "undo":
                for index in range(len(stack) - 1, -1, -1):
                    if stack[index]["sample"] == entry["sample"]:
                        del stack[index]
                        break
            elif entry.get("action") in ("accept", "discard"):
                stack.append(entry)
        return stack

    def decided(self) -> dict[str, dict]:
        return {entry["sample"]: entry for entry in self.history()}

    def record(self, entry: dict) -> dict:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"), **entry}
        try:
            with open(self.log, "a", encoding="utf-8") as file:
                file.write(json.dumps(entry) + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise InboxError(f"cannot write the review log {self.log}: {error.strerror or error}") from None
        return entry


class Dataset:
    """DATASET/<label>/ photo folders; knows every photo's content hash, so a copy is never filed twice."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not folder.is_dir():
            raise InboxError(f"--data {folder}: no such folder (the photo folder to train on, one sub-folder "
                             "per label)")
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise InboxError(f"--data {folder}: cannot write to it ({error.strerror or error})") from None
        self._where: dict[str, Path] = {}
        for label in self.labels():
            for photo in (folder / label).rglob("*"):
                if photo.suffix.lower() in PHOTO_SUFFIXES and photo.is_file() and not photo.name.startswith("."):
                    self._where.setdefault(sha256_file(photo), photo)

    def labels(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def file(self, image: Path, sha256: str, label: str) -> tuple[Path, bool]:
        """Copy `image` (whose content hash is `sha256`) into DATASET/<label>/: (its path, whether it is new).
        A photo already in the dataset is not copied again: its path comes back with False."""
        check_label(label)
        if sha256 in self._where and self._where[sha256].exists():
            return self._where[sha256], False
        target = self.folder / label / (sha256 + image.suffix.lower())
        target.parent.mkdir(exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(image, "rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, target)  # never overwrites: fails if the name exists
        except FileExistsError:
            return target, False
        except OSError as error:
            raise InboxError(f"cannot file {image.name} into {target.parent}: {error.strerror or error}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        self._where[sha256] = target
        return target, True

    def unfile(self, path: Path, sha256: str) -> None:
        """Take back a photo this review filed (undo), if it is still the same photo."""
        with contextlib.suppress(FileNotFoundError):
            if sha256_file(path) == sha256:
                path.unlink()
                if self._where.get(sha256) == path:
                    del self._where[sha256]
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # a label made by this review and now empty


def check_label(label: str) -> str:
    if not LABEL_NAME.fullmatch(label) or label != label.strip():
        raise InboxError(f"label {label!r}: a folder name without slashes, not starting with a dot or a space")
    return label


def accept(inbox: Inbox, dataset: Dataset, sample: Sample, label: str, via: str = "review") -> dict:
    """File the sample's photo under `label` and log it; a duplicate is logged with the photo it repeats."""
    path, new = dataset.file(sample.image, sample.sha256, label)
    return inbox.record({"sample": sample.key, "action": "accept", "label": label, "predicted": sample.top[0],
                         "file": os.fspath(path), "copied": new, "sha256": sample.sha256, "via": via})


def discard(inbox: Inbox, sample: Sample, via: str = "review") -> dict:
    return inbox.record({"sample": sample.key, "action": "discard", "predicted": sample.top[0], "via": via})


def undo_last(inbox: Inbox, dataset: Dataset) -> dict | None:
    """Undo the newest decision in force: its photo leaves the dataset if this review had copied it."""
    history = inbox.history()
    if not history:
        return None
    last = history[-1]
    if last["action"] == "accept" and last.get("copied"):
        dataset.unfile(Path(last["file"]), last["sha256"])
    inbox.record({"sample": last["sample"], "action": "undo"})
    return last
