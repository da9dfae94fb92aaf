"""`./dev run` as a developer uses it: a process that serves the API on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.local_api import DEMO_COMPANY_ID
from localdev.openapi import DOCUMENT
from tests.conftest import ROOT, SECRET_PATTERN, LocalApiProcess


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
def local_api() -> Iterator[LocalApiProcess]:
    process = LocalApiProcess()
    yield process
    process.stop()


def _curl(banner: str) -> tuple[str, bytes, dict[str, str]]:
    line = next(text for text in banner.splitlines() if text.strip().startswith("curl "))
    url = re.search(r"-X POST '([^']+)'", line)
    body = re.search(r"-d '(\{.*\})'", line)
    headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", line))
    assert url and body
    return url.group(1), body.group(1).encode(), headers


def test_printed_curl_twice_gives_two_sessions_and_expires_the_first(local_api: LocalApiProcess) -> None:
    url, body, headers = _curl(local_api.banner)

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


def test_paying_on_the_emulator_page_returns_to_the_confirmation_url(local_api: LocalApiProcess) -> None:
    url, body, headers = _curl(local_api.banner)
    paid_body = body.replace(b"demo-booking-1", b"demo-booking-paid")
    session = json.loads(_request(url, paid_body, "POST", headers)[2])

    status, response_headers, _ = _request(session["Url"], b"", "POST")

    assert status == 303
    assert response_headers["Location"].endswith(
        f"/demo/confirmed?session_id={session['SessionId']}&booking=demo-booking-paid"
    )
    again_status, _, again = _request(url, paid_body, "POST", headers)
    assert again_status == 409 and json.loads(again)["ResponseStatus"]["ErrorCode"] == "AlreadyPaid"


def test_only_the_printed_key_is_accepted_and_only_for_the_demo_company(local_api: LocalApiProcess) -> None:
    url, body, headers = _curl(local_api.banner)
    other_company = body.replace(DEMO_COMPANY_ID.encode(), b"0b8a5c1e-1111-4d2a-9e0f-3c4d5e6f7a8b")

    unknown_status, _, _ = _request(url, body, "POST", {**headers, "x-api-key": "not-a-key"})
    keyless_status, _, _ = _request(url, body, "POST", {"Content-Type": "application/json"})
    foreign_status, _, foreign = _request(url, other_company, "POST", headers)

    assert unknown_status == keyless_status == foreign_status == 403
    assert json.loads(foreign)["ResponseStatus"]["ErrorCode"] == "Forbidden"


def test_a_payment_on_the_emulator_page_is_heard_through_the_webhook_and_the_status_operation(
    local_api: LocalApiProcess,
) -> None:
    url, body, headers = _curl(local_api.banner)
    session = json.loads(
        _request(url, body.replace(b"demo-booking-1", b"demo-booking-heard"), "POST", headers)[2]
    )
    _request(session["Url"], b"", "POST")  # pay, as the payer does on the page
    status_url = url.replace("/checkout", "/checkout/status")
    query = json.dumps({"CompanyId": session_url_company(body), "SessionId": session["SessionId"]}).encode()

    status, _, answer = _request(status_url, query, "POST", headers)

    assert status == 200
    assert json.loads(answer) | {"InternalReferenceId": "x"} == {
        "Status": "complete",
        "PaymentStatus": "paid",
        "CustomerEmail": "payer@example.com",
        "InternalReferenceId": "x",
    }
    # The emulator's signed webhook reaches the local webhook route and records the payment.
    record = local_api.admin(
        "sessions", "--company-id", session_url_company(body), "--reference", "demo-booking-heard"
    )
    assert record["payment_state"] == "paid"  # recorded by the status operation, and by the webhook
    events = [
        e for e in local_api.admin_events() if e["detail"]["InternalReferenceId"] == "demo-booking-heard"
    ]
    assert [e["detail-type"] for e in events] == ["Checkout Paid"]  # once, whoever heard first
    delivered = f"POST /payment/stripe/v1/webhook/{session_url_company(body)} -> 200"
    for _ in range(100):
        if delivered in local_api.output:
            break
        time.sleep(0.05)
    assert delivered in local_api.output  # the emulator's signed event reached the webhook route


def session_url_company(body: bytes) -> str:
    return str(json.loads(body)["CompanyId"])


def test_swagger_page_loads_the_served_document_with_local_assets(local_api: LocalApiProcess) -> None:
    base = local_api.url("Checkout API on")

    docs_status, _, docs = _request(f"{base}/docs")
    scripts = re.findall(rb'(?:src|href)="([^"]+)"', docs)

    assert docs_status == 200 and b"SwaggerUIBundle" in docs
    assert b'url: "/openapi.json"' in docs
    assert scripts and all(s.startswith(b"/docs/") for s in scripts), "Swagger UI must work offline"
    for asset in scripts:
        status, _, content = _request(f"{base}{asset.decode()}")
        assert status == 200 and len(content) > 10_000, asset


def test_openapi_json_is_the_committed_document(local_api: LocalApiProcess) -> None:
    status, headers, body = _request(f"{local_api.url('Checkout API on')}/openapi.json")

    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body.decode() == DOCUMENT.read_text(encoding="utf-8")


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """The request Swagger UI's "Try it out" fills in: each property's first example."""
    if "examples" in schema:
        return schema["examples"][0]
    if "$ref" in schema:
        return _example(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    if schema.get("type") == "object" or "properties" in schema:
        return {name: _example(prop, schemas) for name, prop in schema["properties"].items()}
    raise AssertionError(f"no example for {schema}")


def test_the_documents_example_request_succeeds_against_the_demo_company(local_api: LocalApiProcess) -> None:
    base = local_api.url("Checkout API on")
    document = json.loads(_request(f"{base}/openapi.json")[2])
    operation = document["paths"]["/payment/stripe/v1/checkout"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    example = _example(schema, document["components"]["schemas"])

    status, _, body = _request(
        f"{base}/payment/stripe/v1/checkout", json.dumps(example).encode(), "POST",
        {"Content-Type": "application/json", "x-api-key": _curl(local_api.banner)[2]["x-api-key"]},
    )  # fmt: skip

    assert status == 200, body
    assert json.loads(body)["Status"] == "open"


def test_demo_pages_are_served_with_the_demo_configuration(local_api: LocalApiProcess) -> None:
    base = local_api.url("Checkout API on")

    pages = {path: _request(f"{base}{path}") for path in ("/", "/demo", "/demo/confirmed", "/demo/cancelled")}
    config_status, config_headers, config = _request(f"{base}/demo/config.js")
    script_status, script_headers, _ = _request(f"{base}/demo/checkout.js")
    outside_status, _, outside = _request(f"{base}/demo/../pyproject.toml")

    for path, (status, headers, _) in pages.items():
        assert status == 200 and headers["Content-Type"].startswith("text/html"), path
    assert b'id="pay-hosted"' in pages["/demo"][2] and b'id="pay-embedded"' in pages["/demo"][2]
    assert config_status == 200 and config_headers["Content-Type"].startswith("text/javascript")
    assert b"6f2b0d4e-5c1a-4a8e-9a51-2f3c8d9e7b10" in config and b"Haircut 45 min" in config
    assert f'"stripeJsUrl": "{local_api.url("emulator at")}/v3/"'.encode() in config
    assert script_status == 200 and script_headers["Content-Type"].startswith("text/javascript")
    assert outside_status == 404 and json.loads(outside)["ResponseStatus"]["ErrorCode"] == "NotFound"


def test_unknown_routes_get_the_contracts_404(local_api: LocalApiProcess) -> None:
    status, _, body = _request(
        f"{local_api.url('Checkout API on')}/nowhere", b"{}", "POST", {"Content-Type": "application/json"}
    )

    assert status == 404 and json.loads(body)["ResponseStatus"]["ErrorCode"] == "NotFound"


def test_a_port_in_use_ends_with_one_line_naming_the_option(local_api: LocalApiProcess) -> None:
    taken = int(local_api.url("Checkout API on").rsplit(":", 1)[1])
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]

    result = subprocess.run(
        [sys.executable, "-m", "localdev.local_api", "--port", str(free_port), "--aws-port", "0",
         "--stripe-port", str(taken)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"./dev run: port {taken} (the Stripe emulator) is already in use on 127.0.0.1: is another "
        "./dev run still running? Stop it, or choose another port with --stripe-port N.\n"
    )


def test_ctrl_c_stops_everything(local_api: LocalApiProcess) -> None:
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", local_api.banner)]

    code = local_api.stop()

    assert code == 0, local_api.output
    assert "./dev run: stopped." in local_api.output
    assert not SECRET_PATTERN.search(local_api.output), "a secret reached the local API's output"
    for port in set(ports):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
