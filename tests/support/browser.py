"""A real browser for the console's tests: Debian's chromium driven by Selenium, headless.

Skipped only where chromium is missing and CI is not set; under CI a missing browser fails.
Screenshots go to PRUNESERVE_TEST_ARTIFACTS (default ./test-artifacts), kept by CI.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("chromium", "chromedriver")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("PRUNESERVE_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_chromium() -> tuple[str, str]:
    found = [shutil.which(b) for b in BINARIES]
    if all(found):
        return found[0], found[1]
    missing = ", ".join(b for b, f in zip(BINARIES, found, strict=True) if not f)
    why = f"{missing} not installed (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {why}: the console's browser test must run")
    pytest.skip(why)


def start_chrome(downloads: Path):
    """A headless chromium that saves downloads to `downloads` without asking."""
    chromium, driver_path = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
        "--disable-extensions",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver
