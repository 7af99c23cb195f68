"""The web console in a real browser (chromium, Selenium) against a real api, worker and Redis:
a job submitted through the API is watched to `succeeded` in the page, its report, plots and
samples shown, an artifact downloaded, two jobs compared, one cancelled and deleted from the
page, and another tenant's key (or a wrong one) sees nothing."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.browser import artifacts_dir, require_chromium, start_chrome
from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
PROMPTS = ["The capital of France is", "Once upon a time"]
CAL = {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32}
EVAL = {
    "dataset": "wikitext2",
    "seqlen": 32,
    "max_windows": 2,
    "sample_tokens": 6,
    "prompts": PROMPTS,
}
REC = {"dataset": "wikitext2", "steps": 4, "seqlen": 32, "batch_size": 2}
WANDA = {
    "model": TINY_MODEL,
    "method": "wanda",
    "sparsity": "2:4",
    "calibration": CAL,
    "evaluation": EVAL,
}
MAGNITUDE = {**WANDA, "method": "magnitude", "sparsity": 0.5, "recovery": REC}
LONG = {**WANDA, "recovery": {**REC, "steps": 100_000}}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_chromium()
    downloads = tmp_path_factory.mktemp("downloads")
    driver = start_chrome(downloads)
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait_for(check, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # an element replaced by the page's next poll: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, selector: str) -> str:
    found = css(driver, selector)
    return found[0].text if found else ""


def use_key(driver, url: str, key: str) -> None:
    driver.get(f"{url}/ui/#/")
    if css(driver, "#key-forget") and css(driver, "#key-forget")[0].is_displayed():
        css(driver, "#key-forget")[0].click()
    css(driver, "#key-input")[0].send_keys(key)
    css(driver, "#key-use")[0].click()


def submit(live_service, spec: dict) -> str:
    with live_service.client() as c:
        return c.post("/v1/jobs", json=spec).raise_for_status().json()["id"]


def test_console(live_service, browser):
    url, d = live_service.url, browser
    d.get(f"{url}/ui")
    assert wait_for(lambda: text_of(d, "#need-key"), what="the key prompt")
    use_key(d, url, live_service.api_key)
    assert d.execute_script("return sessionStorage.getItem('pruneserve-api-key')")
    assert d.execute_script("return localStorage.length") == 0  # the key is kept in the tab only

    # a job submitted through the API, watched to the end in its page
    first = submit(live_service, WANDA)
    d.get(f"{url}/ui/#/job/{first}")
    seen = set()

    def succeeded():
        seen.add(text_of(d, "#job-state"))
        return "succeeded" in seen

    wait_for(succeeded, 180, "the job page to show succeeded")
    assert seen & {"queued", "running"}, seen  # the page showed it before it ended
    wait_for(lambda: css(d, "#report"), 30, "the report")
    with live_service.client() as c:
        report = c.get(f"/v1/jobs/{first}/artifacts/pruning_report.json").json()
        card = c.get(f"/v1/jobs/{first}/artifacts/README.md").content
    ppl = text_of(d, "#perplexity")
    assert f"{report['perplexity']['dense']:.3f}" in ppl
    assert f"{report['perplexity']['after']['prune']:.3f}" in ppl
    samples = text_of(d, "#samples")
    assert all(p in samples for p in PROMPTS) and "after pruning" in samples
    assert "50.00%" in text_of(d, "#summary")
    wait_for(
        lambda: d.execute_script(
            "const i = [...document.querySelectorAll('#plots img')];"
            "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 100)"
        ),
        30,
        "the plots to load",
    )
    d.save_screenshot(str(artifacts_dir() / "console-job.png"))

    # an artifact downloaded through the page is the file the API lists
    css(d, "#artifacts button[data-path='README.md']")[0].click()
    saved = wait_for(lambda: [p for p in d.downloads.glob("README*.md")], 30, "the download")
    wait_for(lambda: saved[0].read_bytes() == card, 10, "the whole file")

    # two jobs side by side
    second = submit(live_service, MAGNITUDE)
    d.get(f"{url}/ui/#/")
    for job_id in (first, second):
        wait_for(lambda j=job_id: css(d, f"input.pick[value='{j}']"), 30, "the job list")
    done = [f"tr:has(input[value='{j}']) .state-succeeded" for j in (first, second)]
    wait_for(lambda: all(css(d, sel) for sel in done), 180, "both jobs to succeed")
    for job_id in (first, second):
        css(d, f"input.pick[value='{job_id}']")[0].click()
    css(d, "#compare")[0].click()
    wait_for(lambda: len(css(d, "#compare-table .state-succeeded")) == 2, 30, "the compare table")
    table = text_of(d, "#compare-table").replace('"', "")
    assert first in table and second in table
    assert re.search(r"spec: method (wanda magnitude|magnitude wanda)\n", table), table
    assert "perplexity, after recovery" in table and "perplexity, dense" in table
    assert re.search(r"sparsity \(pruned modules\) 50\.\d\d% 50\.\d\d%\n", table), table
    d.save_screenshot(str(artifacts_dir() / "console-compare.png"))

    # cancel a running job, then delete it, from its page
    third = submit(live_service, LONG)
    d.get(f"{url}/ui/#/job/{third}")
    wait_for(lambda: text_of(d, "#job-state") == "running", 120, "the long job to run")
    css(d, "#cancel")[0].click()
    wait_for(lambda: text_of(d, "#job-state") == "cancelled", 60, "cancelled")
    css(d, "#delete")[0].click()
    d.switch_to.alert.accept()
    wait_for(lambda: d.current_url.endswith("#/"), 30, "back to the list")
    with live_service.client() as c:
        wait_for(lambda: c.get(f"/v1/jobs/{third}").status_code == 404, 30, "the job deleted")

    # another tenant's key sees none of it; a wrong key sees an error and no jobs
    use_key(d, url, live_service.other_api_key)
    wait_for(lambda: css(d, "#no-jobs") or css(d, "#jobs"), 30, "the other tenant's list")
    assert not {first, second, third} & {e.get_attribute("value") for e in css(d, "input.pick")}
    d.get(f"{url}/ui/#/job/{first}")
    wait_for(lambda: "not found" in text_of(d, "#error"), 30, "not found")
    assert not css(d, "#report") and first not in d.find_element("css selector", "#view").text
    use_key(d, url, "not-a-key")
    wait_for(lambda: "invalid API key" in text_of(d, "#error"), 30, "the key refused")
    assert not css(d, "#jobs")


def test_console_assets_are_local(live_service):
    with httpx.Client(base_url=live_service.url, timeout=30) as c:
        page = c.get("/ui/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "http" not in page.text.split("<footer>")[0]
        for asset in ("console.js", "job.js", "compare.js", "console.css"):
            r = c.get(f"/ui/{asset}")
            assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
        assert c.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
