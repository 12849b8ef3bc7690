"""The live page outlines each region over the camera view, with its label (real headless Chromium)."""
from __future__ import annotations

from tests.conftest import REPO
from tests.daemon.test_browser import browser  # noqa: F401 (the fixture)
from testkit.scenes import side_by_side


def test_the_live_page_outlines_the_regions_with_their_labels(browser, run_daemon, reference_model, clear_photos,  # noqa: F811
                                                              tmp_path):
    scene = tmp_path / "scene"
    scene.mkdir()
    side_by_side(clear_photos["sunflowers"], clear_photos["roses"], scene / "pots.jpg")
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{scene}", "--source-fps", "5",
                        "--threads", "1", "--http", "127.0.0.1:0", "--region", "left=0,0,0.5,1",
                        "--region", "right=0.5,0,0.5,1")
    daemon.healthy()
    browser.get(daemon.url + "/")
    daemon.wait_for(lambda: browser.execute_script("return document.getElementById('stream').naturalWidth") == 480,
                    timeout=20, what="the view")

    def boxes():
        found = browser.execute_script("""
            const image = document.getElementById('stream').getBoundingClientRect();
            return [...document.querySelectorAll('.region')].map((box) => {
              const r = box.getBoundingClientRect();
              return {name: box.dataset.name, text: box.textContent, left: r.left - image.left,
                      width: r.width, height: r.height, imageWidth: image.width, imageHeight: image.height};
            });""")
        # drawn once the page knows the stream's size: on the image's true aspect, inside the letterbox
        shaped = all(abs(box["width"] * 2 / box["height"] - 480 / 240) < 0.05 for box in found)
        return len(found) == 2 and shaped and all(":" in box["text"] for box in found) and found
    left, right = sorted(daemon.wait_for(boxes, timeout=20, what="two outlined regions"), key=lambda b: b["name"])
    assert "sunflowers" in left["text"] and "roses" in right["text"]
    assert abs(left["width"] - right["width"]) <= 2 and abs(right["left"] - left["left"] - left["width"]) <= 3
    assert abs(left["width"] * 2 - left["imageWidth"]) <= 3
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    browser.save_screenshot(str(REPO / "test-artifacts" / "events-live-regions.png"))
