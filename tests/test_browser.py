"""The upload page in a real browser: headless Chromium uploads the sample clip to a live server.

Needs Debian's ``chromium`` and ``chromium-driver`` (or any chromedriver on PATH) and the
``selenium`` package; skips cleanly without them. A screenshot is left in the temp folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.test_detect import SAMPLE, fake_ctx
from tests.test_service import live_server

SCREENSHOT = Path(tempfile.gettempdir()) / "dfd_detect_page.png"


def _chrome_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary, chromedriver = _chrome_binary(), shutil.which("chromedriver")
    if not binary or not chromedriver:
        pytest.skip("headless browser test needs chromium and chromedriver "
                    "(apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,1400"):
        opts.add_argument(arg)
    try:
        drv = webdriver.Chrome(service=Service(chromedriver), options=opts)
    except Exception as err:  # noqa: BLE001 - a broken local browser install is not our failure
        pytest.skip(f"chromium did not start: {err}")
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def test_upload_page_shows_verdict_plot_and_faces(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    with live_server(fake_ctx(n_frames=8), tmp_root=str(tmp_path)) as base:
        driver.get(base + "/")
        assert "deepfake" in driver.title.lower()
        submit = driver.find_element(By.ID, "submit")
        assert not submit.is_enabled()  # nothing chosen yet
        driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
        submit.click()
        wait = WebDriverWait(driver, 60)
        word = wait.until(EC.visibility_of_element_located((By.ID, "verdict-word")))
        assert word.text in ("FAKE", "REAL")
        plot = driver.find_element(By.ID, "score-plot")
        assert len(plot.find_elements(By.TAG_NAME, "circle")) == 8  # one dot per face
        assert plot.find_elements(By.TAG_NAME, "polyline")
        thumbs = driver.find_elements(By.CSS_SELECTOR, "#thumbs img")
        assert len(thumbs) == 8
        assert all(driver.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbs)
        assert "P(fake)" in driver.find_element(By.ID, "verdict").text
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(SCREENSHOT))
    assert os.path.getsize(SCREENSHOT) > 0


EXPLAIN_SCREENSHOT = Path(tempfile.gettempdir()) / "dfd_detect_page_explain.png"


def test_upload_page_shows_heat_maps_on_the_faces(driver, tmp_path):
    """The shipped model and the real face detector on the bundled public-domain sample:
    the thumbnails show Grad-CAM overlays, and the toggle switches back to the plain faces.
    Set DFD_DOCS_SCREENSHOT=PATH to keep the screenshot (docs/img/upload-explain.png)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from dfd_app.detect import pipeline

    ctx = pipeline.build_context(n_frames=8)
    with live_server(ctx, tmp_root=str(tmp_path)) as base:
        driver.get(base + "/")
        driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 120).until(EC.visibility_of_element_located((By.ID, "verdict-word")))
        toggle = driver.find_element(By.ID, "show-heat")
        assert toggle.is_displayed() and toggle.is_selected()
        thumbs = driver.find_elements(By.CSS_SELECTOR, "#thumbs img")
        assert thumbs and all(t.get_attribute("data-overlay") == "1" for t in thumbs)
        assert all(driver.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbs)
        heat_src = thumbs[0].get_attribute("src")
        toggle.click()
        plain = driver.find_elements(By.CSS_SELECTOR, "#thumbs img")
        assert not any(t.get_attribute("data-overlay") for t in plain)
        assert plain[0].get_attribute("src") != heat_src
        toggle.click()
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1000, min(int(height) + 140, 2400))  # the whole page, thumbnails too
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(EXPLAIN_SCREENSHOT))
    assert os.path.getsize(EXPLAIN_SCREENSHOT) > 0
    keep = os.environ.get("DFD_DOCS_SCREENSHOT")
    if keep:
        shutil.copyfile(EXPLAIN_SCREENSHOT, keep)
