"""Open a report in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) and measure what a
reader gets: console errors, network requests, decoded images, what the first screen shows, overflow at phone width."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


def _driver(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


FIRST_SCREEN_JS = """
const vh = window.innerHeight;
const top = el => el ? el.getBoundingClientRect().top : null;
const bottom = el => el ? el.getBoundingClientRect().bottom : null;
const cards = [...document.querySelectorAll('.verdict')];
return {
  viewport: [window.innerWidth, vh],
  page_height: document.documentElement.scrollHeight,
  gate_panel_bottom: bottom(document.getElementById('gate-panel')),
  run_card_top: top(document.getElementById('run')),
  verdict_cards: cards.length,
  verdict_cards_in_first_screen: cards.filter(c => c.getBoundingClientRect().bottom <= vh).length,
  images: [...document.images].map(i => [i.complete, i.naturalWidth]),
};
"""


def inspect(html: Path, screenshot: Path | None = None, width: int = 1400, height: int = 900) -> dict:
    """Open html (file://) at width x height, then at 390 x 844: return what was measured."""
    driver = _driver(width, height)
    try:
        driver.get(Path(html).resolve().as_uri())
        out = driver.execute_script(FIRST_SCREEN_JS)
        out["console_errors"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        requests = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
        out["network_requests"] = [u for u in requests if not u.startswith(("file:", "data:"))]
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
        driver.set_window_size(390, 844)
        out["phone_overflow_px"] = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth;")
        return out
    finally:
        driver.quit()
