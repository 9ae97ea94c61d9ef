"""Test helpers for the web labeller: find the URL a process printed, answer its page over plain HTTP,
and start the system's headless Chromium (skipped where it is missing, unless RUAGENT_REQUIRE_BROWSER=1,
which .ci/run sets so that CI cannot skip the browser tests)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
URL = re.compile(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+")


def require(module: str):
    """``pytest.importorskip`` that fails instead of skipping when RUAGENT_REQUIRE_BROWSER=1 (CI)."""
    if os.environ.get("RUAGENT_REQUIRE_BROWSER") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def chromium_paths() -> tuple[str, str]:
    """The system Chromium and its driver; skip (fail under RUAGENT_REQUIRE_BROWSER=1) where missing."""
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    if not (chromium and driver):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("RUAGENT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


def wait_for_url(stderr_file: Path, process: subprocess.Popen, timeout: float = 120) -> str:
    """The labeller's URL once the process has printed it to ``stderr_file``."""
    deadline = time.monotonic() + timeout
    while True:
        text = stderr_file.read_text(encoding="utf-8", errors="replace") if stderr_file.exists() else ""
        match = URL.search(text)
        if match:
            return match.group(0)
        assert process.poll() is None, f"the process ended before printing a URL:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"no URL printed within {timeout} s:\n{text[-3000:]}"
        time.sleep(0.1)


class PageClient:
    """The page's JSON API over HTTP, as the page's script uses it."""

    def __init__(self, url: str) -> None:
        self.base, self.token = url.split("/?token=")

    def get(self, path: str, token: str | None = None) -> bytes:
        with urllib.request.urlopen(f"{self.base}/{path}?token={token or self.token}", timeout=30) as response:
            return response.read()

    def state(self) -> dict:
        return json.loads(self.get("api/state"))

    def answer(self, query: str, answer: str) -> dict:
        request = urllib.request.Request(f"{self.base}/api/answer?token={self.token}", method="POST",
                                         data=json.dumps({"query": query, "answer": answer}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def answer_until_exit(url: str, process: subprocess.Popen, answer: str = "left", timeout: float = 240) -> int:
    """Answer every query the page shows until ``process`` exits; the number answered. Fetches each
    query's clips too (a page would)."""
    client, answered = PageClient(url), 0
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, f"still labelling after {timeout} s ({answered} answered)"
        try:
            state = client.state()
        except (urllib.error.URLError, ConnectionError):  # the server closed: the process is ending
            time.sleep(0.1)
            continue
        query = state["query"]
        if state["status"] != "query":
            time.sleep(0.05)
            continue
        assert client.get(f"api/clip/{query['id']}/0.gif")[:6] == b"GIF89a"
        try:
            client.answer(query["id"], answer)
            answered += 1
        except urllib.error.HTTPError as error:
            assert error.code == 409, error  # the round timed out meanwhile
    return answered


def headless_chromium(width: int = 1100, height: int = 760):
    """A Selenium driver of the system's headless Chromium (no Selenium Manager, no network)."""
    webdriver = require("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)
