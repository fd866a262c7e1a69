"""The annotation page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
installed by the Makefile's test set-up) driven by Selenium against `vidcurate annotate` on a real
socket. It waits until the video element has played the clip, picks a caption with a key, starts a
correction from another candidate with a key, edits and submits it, marks acceptable captions,
checks the exported labels, and saves a screenshot of each mode (under the test's tmp folder;
VIDCURATE_SCREENSHOTS=DIR keeps them there too)."""
from __future__ import annotations

import os
import shutil
import signal

import pytest
from conftest import run_cli, synth_world
from test_annotate import start_server

from vidcurate.schemas.labels import read_labels

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = tmp_path_factory.mktemp("browser") / "world"
    synth_world(world, "--clips", "12", "--seed", "5", "--label-share", "0.5")
    labels = str(world.parent / "labels" / "labels.parquet")
    server, base = start_server(world, labels)
    yield base, labels, world
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)


def wait_for(driver, condition, timeout=60):
    """Until ``condition(driver)`` is truthy; a page still loading (scripts failing, elements going
    stale) counts as not yet."""
    from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(JavascriptException, StaleElementReferenceException)
                         ).until(condition)


def screenshot(driver, tmp_path, name):
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    keep = os.environ.get("VIDCURATE_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copyfile(path, os.path.join(keep, path.name))


def played(driver):
    """The clip element has data and its playhead moved (it really decoded and played)."""
    return driver.execute_script("const v = document.getElementById('clip');"
                                 "return !!v && v.readyState >= 2 && v.currentTime > 0.2 && !v.error;")


def current(driver):
    """The assignment the page shows (None while a page is loading)."""
    return driver.execute_script("const s = document.getElementById('assignment');"
                                 "return s ? JSON.parse(s.textContent) : null;")


def submitted(driver, before):
    """The page moved on to another assignment than ``before``."""
    def moved(d):
        shown = current(d)
        return shown is not None and shown["assignment"] != before
    return moved


def test_the_page_plays_the_clip_and_takes_keyboard_answers(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, labels, world = served
    browser.get(base + "/")
    name = browser.find_element(By.NAME, "annotator")
    name.send_keys("ana", Keys.ENTER)
    wait_for(browser, lambda d: "Choose a task" in d.page_source)

    # Best caption: the clip plays; the key 2 picks the second candidate as shown.
    browser.get(base + "/annotate/best")
    wait_for(browser, played)
    browser.execute_script("document.querySelector('button.rate[data-rate=\"2\"]').click()")
    assert browser.execute_script("return document.getElementById('clip').playbackRate") == 2
    screenshot(browser, tmp_path, "mode-best")
    first = current(browser)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(" ")  # space pauses
    wait_for(browser, lambda d: d.execute_script("return document.getElementById('clip').paused"))
    before = browser.execute_script("return document.getElementById('clip').currentTime")
    body.send_keys(".")  # one frame forward, at the clip's own frame rate
    after = browser.execute_script("return document.getElementById('clip').currentTime")
    assert first["fps"] and after - before == pytest.approx(1 / first["fps"], abs=1e-3)
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    wait_for(browser, submitted(browser, first["assignment"]))
    # u takes the pick back: the same clip returns in the same order; 2 picks again; n skips the next one.
    second = current(browser)
    browser.find_element(By.TAG_NAME, "body").send_keys("u")
    wait_for(browser, lambda d: (current(d) or {}).get("assignment") == first["assignment"])
    assert current(browser)["shown"] == first["shown"]
    wait_for(browser, played)
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    wait_for(browser, submitted(browser, first["assignment"]))
    skipped = current(browser)
    assert skipped["clip_id"] == second["clip_id"]
    browser.find_element(By.TAG_NAME, "body").send_keys("n")
    wait_for(browser, submitted(browser, skipped["assignment"]))
    assert current(browser)["clip_id"] != skipped["clip_id"]

    # Correction: key 3 starts the editor from the third candidate; the edited text is submitted.
    browser.get(base + "/annotate/correct")
    wait_for(browser, played)
    shown = current(browser)
    editor = browser.find_element(By.ID, "corrected")
    assert editor.get_attribute("value") == shown["candidates"][shown["prefill"]]
    browser.find_element(By.TAG_NAME, "body").send_keys("3")
    assert editor.get_attribute("value") == shown["candidates"][2]
    editor.clear()
    editor.send_keys("Two small red squares drift to the left over a city street.")
    screenshot(browser, tmp_path, "mode-correct")
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(browser, submitted(browser, shown["assignment"]))

    # Acceptable: keys 1 and 3 mark two candidates, Shift+3 makes the third the best, Enter submits.
    browser.get(base + "/annotate/acceptable")
    wait_for(browser, played)
    shown = current(browser)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("1")
    body.send_keys(Keys.SHIFT, "3")
    screenshot(browser, tmp_path, "mode-acceptable")
    body.send_keys(Keys.ENTER)
    wait_for(browser, submitted(browser, shown["assignment"]))

    # A stale page is refused with the server's message on the page, and nothing is stored.
    browser.execute_script("const s = document.getElementById('assignment');"
                           "const a = JSON.parse(s.textContent); a.shown.reverse(); s.textContent = JSON.stringify(a);")
    browser.get(base + "/annotate/best")
    wait_for(browser, played)
    browser.execute_script("""
        fetch('/api/submit', {method: 'POST', headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({assignment: JSON.parse(document.getElementById('assignment').textContent).assignment,
                                shown: [99], choice: 0})})
          .then(r => r.json()).then(j => { document.getElementById('status').textContent = j.error; });""")
    wait_for(browser, lambda d: "stale candidate order" in d.find_element(By.ID, "status").text)

    browser.get(base + "/")
    screenshot(browser, tmp_path, "overview")
    done = run_cli("annotate", "export", str(world), "--labels", labels)  # the store, rewritten as parquet
    assert done.returncode == 0, done.stderr
    rows = read_labels(labels)
    assert [r["annotator"] for r in rows] == ["ana"] * 3
    best, correction, acceptable = rows
    assert best["choice"] == 1 and [c["text"] for c in best["candidates"]] == first["candidates"]
    assert correction["choice"] == 2
    assert correction["corrected"] == "Two small red squares drift to the left over a city street."
    assert acceptable["acceptable"] == [0, 2] and acceptable["choice"] == 2
