"""Label Studio interop, in its documented JSON formats: the inbox's samples out as tasks with the model's
answer as a pre-annotation (`predictions`), and a project's JSON export back in, filed into the dataset.

A task's `data` carries the sample's key, its JPEG's sha256 and the inbox's path besides the image, so
an export comes back to the very sample it started from, wherever Label Studio served the image from.
The image URL is Label Studio's local-files form, relative to the inbox: start Label Studio with
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<the inbox>.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from device.atomic import atomic_write
from device.errors import UserError
from trainer.inbox import Dataset, Inbox, Sample, accept, check_label

FROM_NAME, TO_NAME = "label", "image"  # the Choices and Image tags of the labeling config written beside


class LabelStudioError(UserError):
    """A Label Studio file that cannot be read or written."""


def export_tasks(inbox: Inbox, path: Path, labels: Sequence[str]) -> tuple[int, Path]:
    """Write the undecided whole samples as Label Studio tasks, and the labeling config beside them
    (`tasks.label-config.xml`); returns (tasks written, config path)."""
    samples, _ = inbox.scan()
    tasks = [_task(inbox, sample) for sample in samples]
    labels = list(labels) + sorted({s.top[0] for s in samples} - set(labels))
    config = path.with_name(path.stem + ".label-config.xml")
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    try:
        with atomic_write(path) as file:
            json.dump(tasks, file, indent=1)
        with atomic_write(config) as file:
            file.write(f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n'
                       f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
                       f"{choices}\n  </Choices>\n</View>\n")
    except OSError as error:
        raise LabelStudioError(f"cannot write {path}: {error.strerror or error}") from None
    return len(tasks), config


def _task(inbox: Inbox, sample: Sample) -> dict:
    label, score = sample.top
    model = sample.sidecar.get("model") or {}
    relative = sample.image.relative_to(inbox.folder).as_posix()
    return {
        "data": {"image": f"/data/local-files/?d={quote(relative)}", "bloomkit_sample": sample.key,
                 "bloomkit_sha256": sample.sha256, "bloomkit_inbox": os.fspath(inbox.folder.resolve()),
                 "scores": sample.sidecar["scores"], "host": sample.sidecar.get("host")},
        "predictions": [{
            "model_version": " ".join(str(model.get(k)) for k in ("name", "version") if model.get(k)) or "bloomkit",
            "score": round(score, 4),
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [label]}}],
        }],
    }


def import_export(path: Path, dataset: Dataset, inbox: Inbox | None) -> dict:
    """File the photos of a Label Studio JSON export into the dataset; returns the counts by outcome."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise LabelStudioError(f"{path}: {error.strerror or error}") from None
    except ValueError as error:
        raise LabelStudioError(f"{path} is not a JSON export of Label Studio ({error})") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise LabelStudioError(f"{path} is not a JSON export of Label Studio (expected a list of tasks with data)")
    counts = {"filed": 0, "duplicates": 0, "unlabelled": 0, "already_decided": 0, "missing": 0}
    undecided: dict[Path, dict[str, Sample]] = {}  # per inbox, scanned once
    for task in tasks:
        label = _choice(task)
        if label is None:
            counts["unlabelled"] += 1
            continue
        check_label(label)
        task_inbox = inbox or _inbox_of(task)
        if task_inbox is None:
            counts["missing"] += 1
            continue
        if task_inbox.folder not in undecided:
            undecided[task_inbox.folder] = {sample.key: sample for sample in task_inbox.scan()[0]}
        key = task["data"].get("bloomkit_sample")
        sample = undecided[task_inbox.folder].pop(key, None)
        if sample is None or sample.sha256 != task["data"].get("bloomkit_sha256"):
            counts["already_decided" if key in task_inbox.decided() else "missing"] += 1
            continue
        entry = accept(task_inbox, dataset, sample, label, via="label-studio")
        counts["filed" if entry["copied"] else "duplicates"] += 1
    return counts


def _choice(task: dict) -> str | None:
    """The label of the newest annotation that was not skipped, if it chose one."""
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    for annotation in sorted(annotations, key=lambda a: str(a.get("updated_at") or a.get("created_at") or "")
                             )[::-1]:
        for result in annotation.get("result") or []:
            choices = (result.get("value") or {}).get("choices")
            if result.get("type") == "choices" and choices:
                return str(choices[0])
    return None


def _inbox_of(task: dict) -> Inbox | None:
    folder = task["data"].get("bloomkit_inbox")
    try:
        return Inbox(Path(folder)) if folder else None
    except UserError:
        return None
