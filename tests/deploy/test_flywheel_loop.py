"""The whole loop on real parts: a loopback sshd "Pi" runs `device run` with a deliberately weak model and
collects the frames it is unsure of; `fab collect` brings them home; Chromium labels some on the review page;
`trainer train` retrains, computing only the new photos' features; `fab deploy` ships the model and
/healthz reports its sha256."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.collect import samples_folder
from deploy.jobs.deploy import deploy_fleet
from device.cache import cache_root
from device.digest import sha256_file
from device.samples import complete_names
from tests.conftest import REPO
from tests.daemon.test_browser import browser  # noqa: F401  (the real Chromium fixture)
from testkit.sshlab import run_fab
from tests.deploy.test_deploy_e2e import healthz
from tests.trainer.test_feature_cache import unique_photos
from tests.trainer.test_review import ReviewProcess
from trainer.inbox import Inbox

pytestmark = pytest.mark.slow


def train(data: Path, export: Path, cache: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "--data", str(data), "--epochs", "1",
                           "--export-dir", str(export), "--json"], capture_output=True, text=True, cwd=REPO,
                          timeout=900, env={**os.environ, "BLOOMKIT_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_device_to_workstation_to_a_better_model_and_back(lab, flowers_dir, builder, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    dataset = unique_photos(flowers_dir, tmp_path / "dataset", 8)
    cache = tmp_path / "cache"  # a feature cache of its own (converted backbones shared): the counts are this test's
    cache.mkdir()
    (cache / "backbones").symlink_to(cache_root() / "backbones", target_is_directory=True)
    weak = train(dataset, tmp_path / "weak", cache)               # one epoch on 40 photos: unsure of much
    camera = tmp_path / "camera"
    camera.mkdir()
    for label in ("daisy", "roses", "tulips"):
        for photo in sorted((flowers_dir / label).glob("*.jpg"))[40:43]:
            shutil.copy(photo, camera / f"{label}-{photo.name}")

    host = lab.host("pi-1", lab.start_server("pi-1"))
    host = dataclasses.replace(host, daemon=dataclasses.replace(
        host.daemon, source=f"folder:{camera}",
        args=("--source-fps", "4", "--collect", "--collect-uncertain", "0:0.97", "--collect-max-per-minute", "30")))
    [result] = deploy_fleet([host], Path(weak["model_path"]), builder=builder, quiet=True)
    assert result.status == "OK", result
    folder = Path(samples_folder(host))
    deadline = time.monotonic() + 90
    while len(complete_names(folder)) < 6:
        assert time.monotonic() < deadline, f"no samples on the host: {healthz(host)}"
        time.sleep(0.5)

    inbox = tmp_path / "inbox"
    done = run_fab(builder, "collect", "--inventory", str(lab.inventory([host])), "--inbox", str(inbox), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = json.loads(done.stdout)
    assert report["status"] == "OK" and report["detail"]["copied"] >= 6

    review = ReviewProcess(inbox, dataset)
    try:
        browser.get(review.url)
        wait = WebDriverWait(browser, 15)
        body = browser.find_element(By.TAG_NAME, "body")
        for key in (Keys.ENTER, "3", Keys.ENTER, "x"):            # accept, roses, accept, discard
            shown = browser.find_element(By.ID, "image").get_attribute("data-sample")
            wait.until(lambda b: b.find_element(By.ID, "image").get_attribute("data-sample") not in (None, ""))
            body.send_keys(key)
            wait.until(lambda b: b.find_element(By.ID, "image").get_attribute("data-sample") != shown)
    finally:
        review.stop()
    entries = Inbox(inbox).history()
    assert [entry["action"] for entry in entries] == ["accept", "accept", "accept", "discard"]
    added = sum(1 for entry in entries if entry.get("copied"))
    assert added >= 1

    better = train(dataset, tmp_path / "better", cache)
    assert (better["features_cached"], better["features_computed"]) == (40, added), "only the new photos"
    [result] = deploy_fleet([host], Path(better["model_path"]), builder=builder, quiet=True)
    assert result.status == "OK", result
    assert healthz(host)["model"]["sha256"] == sha256_file(better["model_path"])
