"""Headless Chromium (Debian's chromium + chromedriver) driven by Selenium, and the local API.

`./dev setup-browser` installs the browser; CI runs it first. Without it the browser
tests skip on a developer's machine and fail in CI (CI=true), where a skip would hide
that they never ran. Screenshots of every step go to test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.conftest import ROOT, SECRET_PATTERN, LocalApiProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
# As root and without a network beyond package registries, Chromium needs all of these:
# no sandbox (root), and none of its own background traffic to Google's services.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1100,1000", "--lang=en-US",
)  # fmt: skip


@pytest.fixture(scope="session")
def local_api() -> Iterator[LocalApiProcess]:
    process = LocalApiProcess()
    yield process
    process.stop()
    assert not SECRET_PATTERN.search(process.output), "a secret reached the local API's output"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (
            "Chromium is not installed: ./dev setup-browser installs Debian's chromium and chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # A driver path of our own keeps Selenium Manager (which would download one) out of it.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Screenshots:
    """Numbered screenshots of one test's steps."""

    folder: Path
    driver: WebDriver
    taken: list[Path] = field(default_factory=list)

    def __call__(self, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, browser: WebDriver) -> Screenshots:
    folder = ARTIFACTS / re.sub(r"[^\w-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    browser.delete_all_cookies()
    return Screenshots(folder, browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing browser test leaves a screenshot of where it stopped."""
    report: pytest.TestReport = yield
    shots = getattr(item, "funcargs", {}).get("screenshot")
    if report.when == "call" and report.failed and isinstance(shots, Screenshots):
        shots("failed")
    return report
