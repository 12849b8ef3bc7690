"""`trainer review`: the inbox, the decision log, filing into the dataset, bad input, and the page in Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device.digest import sha256_file
from tests.conftest import REPO, copy_photos, require
from tests.daemon.test_browser import browser  # noqa: F401  (the real Chromium fixture)
from testkit.sample_maker import LABELS, make_inbox
from trainer.inbox import Dataset, Inbox, accept, discard, undo_last


@pytest.fixture
def inbox(flowers_dir, tmp_path) -> tuple[Path, list[str]]:
    folder = tmp_path / "inbox"
    return folder, make_inbox(flowers_dir, folder, 8)


@pytest.fixture
def dataset(flowers_dir, tmp_path) -> Path:
    return copy_photos(flowers_dir, tmp_path / "dataset", 2)


def test_samples_come_most_uncertain_first_and_broken_ones_are_skipped_with_a_note(inbox):
    folder, keys = inbox
    host = folder / "pi-1"
    cut = host / (keys[1].split("/")[1] + ".jpg")
    cut.write_bytes(cut.read_bytes()[:1000])                     # a JPEG cut short
    (host / (keys[2].split("/")[1] + ".json")).write_text("{")  # a sidecar cut short
    (host / "20261129T070000.000Z-000099.jpg").write_bytes(b"\xff\xd8 lone")
    samples, skipped = Inbox(folder).scan()
    assert [s.key for s in samples] == [keys[0], *keys[3:]]
    notes = dict(skipped)
    assert "does not match its sidecar" in notes[keys[1]] and keys[2] in notes
    assert "without its sidecar" in notes["pi-1/20261129T070000.000Z-000099"]


def test_decisions_are_logged_and_undo_takes_the_photo_back(inbox, dataset):
    folder, keys = inbox
    box, data = Inbox(folder), Dataset(dataset)
    first, second, *_ = box.scan()[0]
    entry = accept(box, data, first, "roses")
    filed = Path(entry["file"])
    assert filed == dataset / "roses" / f"{first.sha256}.jpg" and sha256_file(filed) == first.sha256
    discard(box, second)
    assert [s.key for s in box.scan()[0]][:1] == [keys[2]], "decided samples are not shown again"
    assert undo_last(box, data)["action"] == "discard"
    assert undo_last(box, data)["sample"] == first.key and not filed.exists()
    assert [s.key for s in box.scan()[0]][:2] == keys[:2]
    assert [e["action"] for e in box.entries()] == ["accept", "discard", "undo", "undo"]


def test_a_photo_already_in_the_dataset_is_a_duplicate_and_nothing_is_overwritten(inbox, dataset):
    folder, _ = inbox
    box = Inbox(folder)
    sample = box.scan()[0][0]
    shutil.copy(sample.image, dataset / "daisy" / "my-own-name.jpg")
    entry = accept(box, Dataset(dataset), sample, "roses")
    assert entry["copied"] is False and entry["file"] == str(dataset / "daisy" / "my-own-name.jpg")
    assert not (dataset / "roses" / f"{sample.sha256}.jpg").exists()


def review(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli", "review", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def one_line_error(done: subprocess.CompletedProcess, pattern: str) -> None:
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1 and re.search(pattern, done.stderr), done.stderr


def test_an_inbox_that_is_not_one_and_a_missing_dataset_are_one_line(inbox, dataset, tmp_path):
    folder, _ = inbox
    one_line_error(review(str(dataset), "--data", str(dataset)), r"is not an inbox: no samples")
    one_line_error(review(str(tmp_path / "nowhere"), "--data", str(dataset)), r"inbox .*nowhere: no such folder")
    one_line_error(review(str(folder), "--data", str(tmp_path / "nowhere")), r"--data .*nowhere: no such folder")
    one_line_error(review(str(folder)), r"give --data DATASET")


def read_only(folder: Path) -> list[str]:
    """A command prefix under which `folder` is read-only: a read-only bind mount when root (who may write
    anywhere else), plain permissions otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && '
            'exec "$@"', str(folder)]


def test_a_read_only_dataset_is_one_line(inbox, dataset):
    folder, _ = inbox
    prefix = read_only(dataset)
    done = subprocess.run([*prefix, sys.executable, "-m", "trainer.cli", "review", str(folder), "--data",
                           str(dataset), "--no-browser", "--port", "0"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    one_line_error(done, r"--data .*dataset: cannot write to it \(Read-only file system|Permission denied")


class ReviewProcess:
    """`trainer review` in a subprocess; its URL from its first line."""

    def __init__(self, inbox: Path, dataset: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "trainer.cli", "review", str(inbox), "--data",
                                         str(dataset), "--port", "0", "--no-browser"], cwd=REPO, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(line.rstrip() for line in self.process.stdout),
                         daemon=True).start()
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in self.lines):
            assert self.process.poll() is None and time.monotonic() < deadline, (self.lines, self.process.stderr)
            time.sleep(0.05)
        self.url = re.search(r"http://\S+", next(line for line in self.lines if "Ctrl-C" in line)).group(0)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(20) == 0
        time.sleep(0.1)
        return self.lines[-1]


def test_review_page_in_chromium_accepts_picks_discards_undoes_and_makes_a_label(browser, inbox, dataset):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    folder, keys = inbox
    server = ReviewProcess(folder, dataset)
    try:
        browser.get(server.url)
        wait = WebDriverWait(browser, 15)

        def showing(key: str) -> None:
            wait.until(lambda b: b.find_element(By.ID, "image").get_attribute("data-sample") == key)
            wait.until(lambda b: b.execute_script("return document.getElementById('image').naturalWidth") > 0)

        showing(keys[0])
        assert browser.find_element(By.ID, "predicted").text.lower().startswith("daisy 30.0")
        assert [li.get_attribute("data-label") for li in browser.find_elements(By.CSS_SELECTOR, "#labels li")] \
            == list(LABELS)
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ENTER)                       # accept: daisy, as predicted
        showing(keys[1])
        body.send_keys("3")                              # the third label: roses (predicted dandelion)
        showing(keys[2])
        body.send_keys("x")                              # discard
        showing(keys[3])
        body.send_keys("u")                              # undo the discard
        showing(keys[2])
        body.send_keys("n")
        field = browser.find_element(By.ID, "new-label-name")
        wait.until(lambda b: field.is_displayed())
        field.send_keys("lilies", Keys.ENTER)            # a new label, for this sample
        showing(keys[3])
        progress = browser.find_element(By.ID, "progress").text
        assert progress.startswith("5 to review · 3 reviewed") and "3 accepted, 1 discarded, 1 undone" in progress
        assert [li.get_attribute("data-label") for li in browser.find_elements(By.CSS_SELECTOR, "#labels li")][-1] \
            == "lilies"
        browser.save_screenshot(str(REPO / "test-artifacts" / "trainer-review-page.png"))
    finally:
        summary = server.stop()
    assert summary == "accepted 3, discarded 1, undid 1; 5 left to review"
    box = Inbox(folder)
    decided = box.decided()
    assert [decided[k]["label"] for k in keys[:3]] == ["daisy", "roses", "lilies"]
    for key, label in zip(keys[:3], ("daisy", "roses", "lilies")):
        assert Path(decided[key]["file"]).parent == dataset / label
    assert len(list((dataset / "lilies").iterdir())) == 1

    again = ReviewProcess(folder, dataset)                # a new session shows only what is left
    try:
        assert any(line.startswith("5 samples to review") for line in again.lines)
    finally:
        again.stop()


def test_label_studio_export_then_import_files_the_annotated_photos(inbox, dataset, tmp_path):
    folder, keys = inbox
    tasks_file = tmp_path / "tasks.json"
    done = review(str(folder), "--data", str(dataset), "--export-label-studio", str(tasks_file))
    assert done.returncode == 0, done.stderr
    tasks = json.loads(tasks_file.read_text())
    assert [t["data"]["bloomkit_sample"] for t in tasks] == keys
    first = tasks[0]
    assert first["data"]["image"] == f"/data/local-files/?d={keys[0]}.jpg"
    [prediction] = first["predictions"]
    assert prediction["result"] == [{"from_name": "label", "to_name": "image", "type": "choices",
                                     "value": {"choices": ["daisy"]}}]
    assert prediction["score"] == 0.3 and prediction["model_version"] == "efficientnet_lite0 v1"
    config = (tmp_path / "tasks.label-config.xml").read_text()
    assert '<Choices name="label" toName="image"' in config and '<Choice value="tulips"/>' in config

    # What Label Studio's JSON export gives back: ids, the data as imported, annotations (one skipped).
    exported = []
    for number, task in enumerate(tasks[:4]):
        annotation = {"id": 100 + number, "completed_by": 1, "was_cancelled": number == 3,
                      "result": [{"id": f"r{number}", "from_name": "label", "to_name": "image", "type": "choices",
                                  "origin": "manual", "value": {"choices": ["tulips" if number == 1 else "daisy"]}}],
                      "created_at": "2026-11-29T08:00:00.000000Z", "updated_at": "2026-11-29T08:00:00.000000Z"}
        exported.append({"id": number + 1, "data": task["data"], "annotations": [annotation],
                         "predictions": task["predictions"], "project": 1})
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(exported))
    done = review("--import-label-studio", str(export_file), "--data", str(dataset))
    assert done.returncode == 0, done.stderr
    assert "filed 3 photos" in done.stdout and "1 tasks without a label" in done.stdout
    decided = Inbox(folder).decided()
    assert {key: decided[key]["label"] for key in keys[:3]} == {keys[0]: "daisy", keys[1]: "tulips", keys[2]: "daisy"}
    assert keys[3] not in decided and all(decided[k]["via"] == "label-studio" for k in keys[:3])
    done = review("--import-label-studio", str(export_file), "--data", str(dataset))
    assert "filed 0 photos" in done.stdout and "3 decided before" in done.stdout, "importing twice files nothing twice"


@pytest.mark.parametrize("text, message", [
    ("{not json", r"export\.json is not a JSON export of Label Studio"),
    ('{"tasks": []}', r"expected a list of tasks with data"),
])
def test_a_bad_label_studio_export_is_one_line(dataset, tmp_path, text, message):
    export_file = tmp_path / "export.json"
    export_file.write_text(text)
    one_line_error(review("--import-label-studio", str(export_file), "--data", str(dataset)), message)
