"""Open a local HTML file in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through selenium):
what it requested, which requests failed, what it logged to the console, and a screenshot.

    python -m tests.browser runs/demo/report.html docs/report.png 1800   # the README's screenshot (top 1800 px)
    python -m tests.browser runs/demo/report.html#rewrites docs/report-rewrites.png 1400   # from an anchor
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for exe in ("chromium", "chromedriver"):
        if not shutil.which(exe):
            return f"{exe} is not installed (Debian: apt-get install chromium chromium-driver; `make test` does it as root)"  # noqa: E501
    return None


def open_page(path: str | Path, screenshot: str | Path | None = None, width: int = 1280,
              max_height: int = 16000, probe: str | None = None, element: tuple[str, str | Path] | None = None,
              fragment: str | None = None) -> dict:
    """``probe``: a script whose return value comes back as ``probe``; ``element``: (CSS selector, png path) for a
    screenshot of the first element it matches; ``fragment``: open the page at this anchor and take the screenshot of
    ``max_height`` pixels from there."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        url = Path(path).resolve().as_uri()
        driver.get(url + (f"#{fragment}" if fragment else ""))
        state = driver.execute_script("return document.readyState")
        title = driver.title
        height = driver.execute_script("return document.documentElement.scrollHeight")
        n_svg = driver.execute_script("return document.querySelectorAll('svg').length")
        requests, failed = [], []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                requests.append(msg["params"]["request"]["url"])
            elif msg["method"] == "Network.loadingFailed":
                failed.append(msg["params"])
        console = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        probed = driver.execute_script(probe) if probe else None
        if element:
            from selenium.webdriver.common.by import By

            driver.find_element(By.CSS_SELECTOR, element[0]).screenshot(str(element[1]))
        if screenshot:
            driver.set_window_size(width, max_height if fragment else min(int(height) + 40, max_height))
            if fragment:
                driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", fragment)
            driver.save_screenshot(str(screenshot))
        return {"url": url, "ready": state, "title": title, "height": height, "svg": n_svg, "requests": requests,
                "failed": failed, "console": console, "probe": probed}
    finally:
        driver.quit()


if __name__ == "__main__":
    args = sys.argv[1:]
    page, _, anchor = args[0].partition("#")
    got = open_page(page, args[1] if len(args) > 1 else None, max_height=int(args[2]) if len(args) > 2 else 16000,
                    fragment=anchor or None)
    print(json.dumps(got, indent=1)[:3000])
