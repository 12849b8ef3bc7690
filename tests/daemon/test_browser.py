"""The live page in a real headless Chromium: the camera view, a label from real flower photos, readable on a phone."""
from __future__ import annotations

import os
import tempfile
import time

import pytest

from tests.conftest import REPO, require
from tests.daemon.conftest import LABELS, write_video

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def browser():
    require(os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK), "chromium and chromedriver (apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", f"--user-data-dir={profile}", "--window-size=1100,760"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def test_live_page_shows_the_camera_and_a_label(browser, run_daemon, reference_model, photos, tmp_path):
    video = write_video(tmp_path / "flowers.avi", photos["tulips"][1:] + photos["daisy"][:2], fps=10, frames_each=10)
    daemon = run_daemon("--model", str(reference_model), "--source", str(video), "--loop", "--threads", "1",
                        "--http", "127.0.0.1:0", "--smooth", "3")
    daemon.healthy()
    browser.get(daemon.url + "/")

    def shown_label():
        text = browser.find_element("id", "top-label").text.lower()
        return text if text in LABELS else None

    label = daemon.wait_for(shown_label, timeout=20, what="a label on the page")
    assert label in ("tulips", "daisy")
    assert len(browser.find_elements("css selector", "#labels li")) == 3
    assert browser.find_element("id", "status").text == "live"
    daemon.wait_for(lambda: float(browser.find_element("id", "fps").text) > 0, timeout=10, what="the FPS")
    assert browser.find_element("id", "model").text.startswith("efficientnet_lite0")
    daemon.wait_for(lambda: browser.execute_script("return document.getElementById('stream').naturalWidth") == 320,
                    timeout=10, what="the MJPEG view")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "daemon-live-page.png"))

    browser.set_window_size(390, 844)  # a phone: the labels go under the view, nothing sideways
    time.sleep(0.5)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    view = browser.find_element("id", "view").rect
    panel = browser.find_element("id", "panel").rect
    assert panel["y"] >= view["y"] + view["height"] - 1
    browser.save_screenshot(str(ARTIFACTS / "daemon-live-page-phone.png"))
    assert daemon.terminate() == 0
