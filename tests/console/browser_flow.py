"""The web console in a real browser (Debian's chromium + chromedriver,
driven with selenium), run by tests/console_browser.rs.

Arguments: BASE_URL ADMIN_TOKEN READ_TOKEN IMAGE_PATH SHOTS_DIR SIM_DEVICES.
Protocol with the Rust test on stdout: prints `CAMPAIGN <id>` once the
campaign exists (the test then starts the simulated devices), `OK` at the
end. Any failed check raises, so the exit status is non-zero.
"""

import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, ADMIN, READ, IMAGE, SHOTS, SIM = sys.argv[1:7]
SIM = int(SIM)
os.makedirs(SHOTS, exist_ok=True)


def say(line):
    print(line, flush=True)


def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(arg)
    # The Debian driver, named explicitly: selenium must not download one.
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shot(d, name):
    # The whole page, not just the window: emulate a viewport as tall as
    # the page for the one capture.
    width = d.execute_script("return window.innerWidth")
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(int(height), 4000),
        "deviceScaleFactor": 1, "mobile": False})
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def wait(d, seconds=30):
    return WebDriverWait(d, seconds, poll_frequency=0.1)


def text(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text


def login(d, token):
    d.get(BASE + "/")
    field = d.find_element(By.CSS_SELECTOR, 'input[type=password][name=token]')
    field.clear()
    field.send_keys(token)
    d.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()


def count(d, state):
    # Read in one script call: the live region is swapped every 2 s, so an
    # element found first may be gone when its text is asked for.
    n = d.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '0'",
        f'[data-state="{state}"] .n')
    return int(n)


def live_text(d, css):
    return d.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)


def main():
    d = driver()
    try:
        run(d)
    finally:
        d.quit()


def run(d):
    # A wrong token is refused, on the login form.
    login(d, "not-a-token")
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".error")))
    assert "not accepted" in text(d, ".error"), text(d, ".error")
    shot(d, "login")

    login(d, ADMIN)
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "form.logout")))

    # Upload through the form; the progress bar fills, then the details page.
    d.get(BASE + "/firmware")
    d.find_element(By.ID, "fw-file").send_keys(IMAGE)
    d.find_element(By.ID, "fw-product").send_keys("thermo")
    d.find_element(By.ID, "fw-version").send_keys("2.0.0")
    d.find_element(By.ID, "fw-name").send_keys("thermo-2")
    d.find_element(By.ID, "fw-description").send_keys("<b>escaped</b> release notes")
    d.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(d).until(EC.url_matches(r"/firmware/\d+$"))
    fw_id = d.current_url.rsplit("/", 1)[1]
    assert "<b>escaped</b>" in d.page_source.replace("&lt;", "<").replace("&gt;", ">")
    assert not d.find_elements(By.CSS_SELECTOR, "dd b"), "description rendered as HTML"
    shot(d, "firmware-details")

    # The campaign form shows the API's message next to the field.
    d.get(BASE + f"/campaigns/new?firmware={fw_id}")
    d.find_element(By.CSS_SELECTOR, 'input[name=target][value=devices]').click()
    d.find_element(By.CSS_SELECTOR, "#campaign-form button[type=submit]").click()
    wait(d).until(EC.presence_of_element_located((By.ID, "devices-error")))
    assert "must not be empty" in text(d, "#devices-error"), text(d, "#devices-error")
    shot(d, "campaign-form-error")

    d.find_element(By.CSS_SELECTOR, 'input[name=target][value=all]').click()
    d.find_element(By.CSS_SELECTOR, "#campaign-form button[type=submit]").click()
    wait(d).until(EC.url_matches(r"/campaigns/\d+$"))
    campaign = d.current_url.rsplit("/", 1)[1]
    say(f"CAMPAIGN {campaign}")

    # Live: the counts change without a reload (the marker survives).
    d.execute_script("window.__noReload = 'still here'")
    seen_downloading = False
    deadline = time.time() + 120
    while True:
        done = count(d, "updated") + count(d, "failed")
        if not seen_downloading and d.find_elements(By.CSS_SELECTOR, "#live progress[aria-label$=download]"):
            seen_downloading = True
            shot(d, "campaign-live-downloading")
        if done >= SIM:
            break
        assert time.time() < deadline, f"page never showed {SIM} devices final (shows {done})"
        time.sleep(0.2)
    assert d.execute_script("return window.__noReload") == "still here", "the page reloaded"
    assert int(d.find_element(By.ID, "live").get_attribute("data-updates") or "0") > 0
    shot(d, "campaign-live")

    # Cancel: the sleeping devices become failed (cancelled), the page says so.
    d.execute_script("window.confirm = () => true")
    d.find_element(By.CSS_SELECTOR, f"form[action='/campaigns/{campaign}/cancel'] button").click()
    wait(d).until(lambda d: "cancelled" in live_text(d, "#live [role=status]"))
    assert count(d, "failed") >= 1, "the sleeping devices are not failed"
    shot(d, "campaign-cancelled")

    d.get(BASE + "/campaigns")
    shot(d, "campaigns")
    d.get(BASE + "/firmware")
    shot(d, "firmware")

    # Devices: search, then one device's history.
    d.get(BASE + "/devices?q=sleeper")
    rows = d.find_elements(By.CSS_SELECTOR, "main tbody tr")
    assert len(rows) == 2, f"search for sleeper shows {len(rows)} rows"
    d.get(BASE + "/devices")
    shot(d, "devices")
    d.find_element(By.CSS_SELECTOR, "main tbody tr a").click()
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "ol.timeline li")))
    shot(d, "device")

    d.get(BASE + "/versions")
    assert d.find_elements(By.CSS_SELECTOR, ".chart svg rect"), "no chart"
    shot(d, "versions")

    d.get(BASE + "/audit")
    if "Audit" in d.title:
        shot(d, "audit")

    # Narrow screen (phone): the campaign page still reads.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 1400, "deviceScaleFactor": 1, "mobile": True})
    d.get(BASE + f"/campaigns/{campaign}")
    width = d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the phone page scrolls sideways ({width}px)"
    d.save_screenshot(os.path.join(SHOTS, "campaign-phone.png"))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Log out; a read token then sees no write buttons.
    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(d).until(EC.presence_of_element_located((By.NAME, "token")))
    login(d, READ)
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "form.logout")))
    assert "read-only" in text(d, ".who")
    d.get(BASE + "/firmware")
    assert not d.find_elements(By.ID, "upload-form"), "read token sees the upload form"
    d.get(BASE + f"/campaigns/{campaign}")
    assert not d.find_elements(By.CSS_SELECTOR, ".actions form"), "read token sees buttons"
    say("OK")


main()
