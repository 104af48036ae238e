"""``/dashboard`` in a real headless Chromium (Debian's, driven by Selenium): a user logs in with
their token and sees their endpoint, their task group's progress, a failure's traceback and
the charts, refreshed live; another user sees none of it. Real service, endpoint and tasks.

Needs ``chromium``, ``chromium-driver`` and ``selenium`` (``.ci/run`` installs them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from tests.support import TIMEOUT, poll_until
from tests.support.sdk_functions import double, fail
from tests.support.service import Api, user

from fabric import Executor, RemoteExecutionError

SCREENSHOT_DIR = os.environ.get("FABRIC_SCREENSHOT_DIR")
"""If set, the test saves what each user saw there (to look at the page)."""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser: webdriver.Chrome, url: str, token: str) -> None:
    browser.get(f"{url}/dashboard")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{url}/dashboard")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login-button").click()
    poll_until(lambda: browser.find_element(By.ID, "board").is_displayed(), "the dashboard to show")


def text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").get_attribute("textContent") or ""


def save(browser: webdriver.Chrome, name: str, tmp_path: Path) -> None:
    browser.save_screenshot(str(Path(SCREENSHOT_DIR or tmp_path) / f"dashboard-{name}.png"))


def test_a_user_sees_their_work_and_another_sees_none_of_it(cluster: Any, browser: webdriver.Chrome,
                                                           tmp_path: Path) -> None:
    service = cluster.service()
    alice = user(service, "alice")
    registration = alice.register_endpoint("alices-laptop")
    cluster.endpoint(registration)
    endpoint_id = registration["endpoint_id"]
    poll_until(lambda: alice.get_endpoint_status(endpoint_id)["status"] == "online", "the endpoint online")
    with Executor(endpoint_id, client=alice) as executor:
        assert list(executor.map(double, range(120))) == [2 * i for i in range(120)]
        with pytest.raises(RemoteExecutionError):
            executor.submit(fail, "a very particular failure").result(TIMEOUT)
        group = executor.task_group_id

    log_in(browser, service.url, alice._token)
    poll_until(lambda: "alices-laptop" in text(browser) and group in text(browser), "alice's endpoint and group")
    page = text(browser)
    assert f"logged in as {alice.whoami()['name']}" in page
    endpoint_row = browser.find_element(By.CSS_SELECTOR, f"tr[data-endpoint-id='{endpoint_id}']").text
    assert "online" in endpoint_row and "owner" in endpoint_row
    assert "121/121" in page  # the group's progress: every task finished
    failure = browser.find_element(By.CSS_SELECTOR, "#failures details")
    assert "a very particular failure" in failure.text
    failure.click()
    assert "Traceback" in failure.text and "ValueError" in failure.text
    line = browser.find_element(By.CSS_SELECTOR, "#rate-chart polyline").get_attribute("points") or ""
    assert len(line.split()) == 60 and any(float(p.split(",")[1]) < 150 for p in line.split())  # a rise
    before = browser.find_element(By.TAG_NAME, "body").get_attribute("data-refreshed")
    poll_until(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-refreshed") != before,
               "a live refresh")
    assert "Traceback" in browser.find_element(By.CSS_SELECTOR, "#failures details").text  # still open
    save(browser, "alice", tmp_path)

    bob = Api(service.url, service.add_user("bob"))
    log_in(browser, service.url, bob.token or "")
    poll_until(lambda: "logged in as bob" in text(browser), "bob's dashboard")
    page = text(browser)
    for secret in ("alices-laptop", endpoint_id, group, "a very particular failure", "121/121"):
        assert secret not in page
    assert browser.find_element(By.ID, "no-endpoints").is_displayed()
    assert browser.find_element(By.ID, "no-groups").is_displayed()
    save(browser, "bob", tmp_path)


def test_a_bad_token_is_refused_and_the_page_holds_no_data(cluster: Any, browser: webdriver.Chrome) -> None:
    service = cluster.service()
    log_in_page = Api(service.url, None).get("/dashboard")
    assert log_in_page.status == 200 and "script-src 'self'" in log_in_page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in log_in_page.headers["Content-Security-Policy"]
    browser.get(f"{service.url}/dashboard")
    browser.find_element(By.ID, "token").send_keys("0123456789abcdef.not-a-real-secret")
    browser.find_element(By.ID, "login-button").click()
    poll_until(lambda: "not valid" in browser.find_element(By.ID, "login-error").text, "the refusal")
    assert not browser.find_element(By.ID, "board").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('fabric-token')") is None
