"""One real-browser test: headless Chromium logs into the local Label Studio, places two keypoints on a task,
marks one occluded, submits; `sync-labels` then ingests exactly that."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from annotation.client import Studio
from annotation.push import push
from annotation.server import DEFAULT_USER
from annotation.sync import sync_labels
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.settings import labeling, studio_settings

from conftest import SHARED, STUDIO_TOKEN, studio_manifest

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.fail("Chromium is not installed: `apt-get install chromium chromium-driver` (scripts/run.sh does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="iterate-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1920,1080",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _click_image_at(drv, px: float, py: float, width: int, height: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    img = drv.find_element(By.CSS_SELECTOR, "img[alt=image]")
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
    r = drv.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", img)
    ox = (px / width - 0.5) * r[0]
    oy = (py / height - 0.5) * r[1]
    ActionChains(drv).move_to_element_with_offset(img, ox, oy).click().perform()


def test_annotator_in_the_browser(tmp_path, studio, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(SHARED / "label_studio_ui" / "frame_0000.png", frames)  # 400×300, crosses at (213,137), (101,47)
    p = studio_manifest(tmp_path, studio["port"], [{"kind": "images", "path": str(frames)}], "browser")
    m = load_manifest(p)
    led = Ledger(m.workspace_dir)
    ingest(m, led)
    st = Studio.from_settings(studio_settings(m))
    s = push(labeling(m), led, st, [f.id for f in led.frames("pool")])
    tid = led.raw("SELECT task_id FROM tasks").fetchone()[0]
    base = m.label_studio.url
    wait = WebDriverWait(browser, 60)
    browser.get(f"{base}/user/login/")
    wait.until(EC.presence_of_element_located((By.ID, "email"))).send_keys(DEFAULT_USER)
    browser.find_element(By.ID, "password").send_keys(STUDIO_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait.until(lambda d: "/user/login" not in d.current_url)
    browser.get(f"{base}/projects/{s.project_id}/data?task={tid}")
    wait.until(
        lambda d: d.execute_script(
            "const i = document.querySelector('img[alt=image]'); return i && i.complete && i.naturalWidth > 0;"
        )
    )
    time.sleep(1.0)

    def pick_label(name):
        chip = wait.until(
            EC.presence_of_element_located(
                (
                    By.XPATH,
                    f"//span[contains(@class,'lsf-label__text') and normalize-space()='{name}']"
                    f"/ancestor::span[contains(@class,'lsf-label')][1]",
                )
            )
        )
        browser.execute_script("arguments[0].click();", chip)  # the chip may sit under the bottom bar

    pick_label("neck")
    _click_image_at(browser, 213, 137, 400, 300)
    time.sleep(0.5)
    pick_label("head_top")
    _click_image_at(browser, 101, 47, 400, 300)
    time.sleep(0.5)
    items = wait.until(
        lambda d: (
            [e for e in d.find_elements(By.CSS_SELECTOR, ".lsf-outliner-item__title") if "head_top" in e.text] or None
        )
    )
    items[0].click()
    occl = wait.until(EC.presence_of_element_located((By.XPATH, "//input[@name='occluded']/ancestor::label[1]")))
    browser.execute_script("arguments[0].click();", occl)
    time.sleep(0.3)
    browser.find_element(By.CSS_SELECTOR, "button[data-testid=bottombar-submit-button]").click()
    wait.until(lambda d: st.tasks(s.project_id)[0].get("total_annotations", 0) >= 1)
    r = sync_labels(labeling(m), led, st)
    assert (r.new, r.invalid) == (1, [])
    ((f, lab),) = led.current_labels()
    names = m.keypoints.names
    neck, head = lab.keypoints[names.index("neck")], lab.keypoints[names.index("head_top")]
    assert neck[2] == 2 and abs(neck[0] - 213) < 2 and abs(neck[1] - 137) < 2
    assert head[2] == 1 and abs(head[0] - 101) < 2 and abs(head[1] - 47) < 2  # marked occluded in the UI
    placed = [n for n, k in zip(names, lab.keypoints) if k[2] > 0]
    assert sorted(placed) == ["head_top", "neck"]  # nothing else was placed, nothing else is labeled
    led.close()
