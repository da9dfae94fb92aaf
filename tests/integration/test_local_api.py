"""`./dev run` as a developer uses it: a process that serves the API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRET_PATTERN

ROOT = Path(__file__).resolve().parents[2]


def _request(
    url: str, body: bytes | None = None, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def local_api() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "STRIPE_")) and not k.endswith("_TABLE_NAME")
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "localdev.local_api", "--port", "0", "--aws-port", "0", "--stripe-port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    banner: list[str] = []
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    text = "".join(banner)
    assert "Ctrl-C stops everything" in text, text
    yield process, text
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _curl(banner: str) -> tuple[str, bytes, dict[str, str]]:
    line = next(text for text in banner.splitlines() if text.strip().startswith("curl "))
    url = re.search(r"-X POST '([^']+)'", line)
    body = re.search(r"-d '(\{.*\})'", line)
    headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", line))
    assert url and body
    return url.group(1), body.group(1).encode(), headers


def test_printed_curl_twice_gives_two_sessions_and_expires_the_first(
    local_api: tuple[subprocess.Popen[str], str],
) -> None:
    _, banner = local_api
    url, body, headers = _curl(banner)

    first_status, _, first = _request(url, body, "POST", headers)
    second_status, _, second = _request(url, body, "POST", headers)

    assert first_status == 200 and second_status == 200
    first_session, second_session = json.loads(first), json.loads(second)
    assert first_session["Status"] == "open" and first_session["Url"]
    assert second_session["SessionId"] != first_session["SessionId"]
    page_status, _, page = _request(first_session["Url"])
    assert page_status == 200 and b"expired" in page
    page_status, _, page = _request(second_session["Url"])
    assert page_status == 200 and b"open" in page


def test_paying_on_the_emulator_page_returns_to_the_confirmation_url(
    local_api: tuple[subprocess.Popen[str], str],
) -> None:
    _, banner = local_api
    url, body, headers = _curl(banner)
    paid_body = body.replace(b"demo-booking-1", b"demo-booking-paid")
    session = json.loads(_request(url, paid_body, "POST", headers)[2])

    status, response_headers, _ = _request(session["Url"], b"", "POST")

    assert status == 303
    assert response_headers["Location"].endswith("/demo/confirmed")
    again_status, _, again = _request(url, paid_body, "POST", headers)
    assert again_status == 409 and json.loads(again)["ResponseStatus"]["ErrorCode"] == "AlreadyPaid"


def test_only_the_printed_key_is_accepted_and_only_for_the_demo_company(
    local_api: tuple[subprocess.Popen[str], str],
) -> None:
    _, banner = local_api
    url, body, headers = _curl(banner)
    other_company = body.replace(
        b"6f2b0d4e-5c1a-4a8e-9a51-2f3c8d9e7b10", b"0b8a5c1e-1111-4d2a-9e0f-3c4d5e6f7a8b"
    )

    unknown_status, _, _ = _request(url, body, "POST", {**headers, "x-api-key": "not-a-key"})
    keyless_status, _, _ = _request(url, body, "POST", {"Content-Type": "application/json"})
    foreign_status, _, foreign = _request(url, other_company, "POST", headers)

    assert unknown_status == keyless_status == foreign_status == 403
    assert json.loads(foreign)["ResponseStatus"]["ErrorCode"] == "Forbidden"


def test_swagger_page_and_errors_are_served(local_api: tuple[subprocess.Popen[str], str]) -> None:
    _, banner = local_api
    base = re.search(r"Checkout API on (\S+)", banner)
    assert base

    docs_status, _, docs = _request(f"{base.group(1)}/docs")
    missing_status, _, missing = _request(
        f"{base.group(1)}/nowhere", b"{}", "POST", {"Content-Type": "application/json"}
    )

    assert docs_status == 200 and b"swagger" in docs.lower() and b"StripeV1CreateCheckout" in docs
    assert missing_status == 404 and json.loads(missing)["ResponseStatus"]["ErrorCode"] == "NotFound"


def test_ctrl_c_stops_everything(local_api: tuple[subprocess.Popen[str], str]) -> None:
    process, banner = local_api
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", banner)]

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)

    assert process.returncode == 0, output
    assert "checkout-local: stopped." in output
    assert not SECRET_PATTERN.search(banner + output), "a secret reached the local API's output"
    for port in set(ports):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
