"""Stripe's webhooks through the real webhook handler: signatures, every handled event type
first, duplicated and out of order, booking events on the bus, and a death before publishing.

The emulator delivers real signed events over HTTP to a loopback bridge that turns each
into the API Gateway event the deployed webhook function receives.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import pytest

from localdev.apigw import LocalContext, rest_event
from localdev.emulator_webhooks import signature_header
from tests.conftest import Api, Company, Stack, admin, onboard
from tests.integration.test_checkout_api import assert_error_body

WEBHOOK = "/payment/stripe/v1/webhook"
SECRET = "whsec_testSecretForTheWebhookRoute0001"


@pytest.fixture(scope="module")
def webhook_module(stack: Stack) -> ModuleType:
    return importlib.import_module("handlers.stripe_webhook")


@pytest.fixture(scope="module")
def bridge(webhook_module: ModuleType) -> Iterator[str]:
    """Loopback HTTP in front of the webhook handler, as API Gateway is in front of it deployed."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            event = rest_event("POST", self.path, body, headers=dict(self.headers.items()))
            try:
                answer = webhook_module.lambda_handler(event, LocalContext())
            except BaseException:  # the function died: API Gateway answers 502
                answer = {"statusCode": 502, "body": ""}
            payload = str(answer.get("body") or "").encode()
            self.send_response(answer["statusCode"])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def hooked(stack: Stack, bridge: str) -> Company:
    """A company whose Stripe account has a webhook endpoint registered by checkout-admin."""
    company = onboard()
    created = admin("webhook", "create", "--company-id", company.company_id,
                    "--url", f"{bridge}{WEBHOOK}/{company.company_id}")  # fmt: skip
    assert created["enabled_events"] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    ]
    return company


def deliver_signed(
    webhook_module: ModuleType, path: str, payload: bytes, secret: str = SECRET, *, age: int = 0
) -> tuple[int, dict[str, Any]]:
    header = signature_header(payload, secret, int(time.time()) - age)
    event = rest_event("POST", path, payload, headers={"Stripe-Signature": header})
    answer = webhook_module.lambda_handler(event, LocalContext())
    return answer["statusCode"], json.loads(answer["body"])


def event_of(kind: str, session: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "data": {"object": session},
            **extra,
        }
    ).encode()


def settle(stack: Stack) -> None:
    stack.emulator.wait_for_deliveries(timeout=10)


def types_of(stack: Stack, company: Company) -> list[str]:
    return [e["detail-type"] for e in stack.booking_events(company.company_id)]


# -- signatures -----------------------------------------------------------------------------------


@pytest.fixture
def signed_company(stack: Stack) -> Company:
    company = onboard()
    admin("webhook", "put-secret", "--company-id", company.company_id, stdin=SECRET)
    return company


def _paid_session(api: Api, stack: Stack, company: Company, reference: str) -> dict[str, Any]:
    session_id = api.post(company.request(reference)).json["SessionId"]
    return stack.emulator.complete(session_id, deliver=False)


def test_a_signed_event_is_applied_and_tampering_or_another_secret_is_refused(
    api: Api, stack: Stack, signed_company: Company, webhook_module: ModuleType
) -> None:
    session = _paid_session(api, stack, signed_company, "booking-wh-sig")
    path = f"{WEBHOOK}/{signed_company.company_id}"
    payload = event_of("checkout.session.completed", session)

    tampered = payload.replace(b'"paid"', b'"unpaid"')
    header = signature_header(payload, SECRET, int(time.time()))
    reply = webhook_module.lambda_handler(
        rest_event("POST", path, tampered, headers={"Stripe-Signature": header}), LocalContext()
    )
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["ResponseStatus"]["ErrorCode"] == "InvalidSignature"
    assert deliver_signed(webhook_module, path, payload, "whsec_someoneElse0000")[0] == 400
    assert deliver_signed(webhook_module, path, payload, age=301)[0] == 400  # stale timestamp
    missing = webhook_module.lambda_handler(rest_event("POST", path, payload), LocalContext())
    assert missing["statusCode"] == 400
    assert signed_company.sessions("booking-wh-sig")["payment_state"] == "payable"  # nothing changed

    status, body = deliver_signed(webhook_module, path, payload)

    assert (status, body["Outcome"]) == (200, "applied")
    assert signed_company.sessions("booking-wh-sig")["payment_state"] == "paid"


def test_a_rolled_secret_accepts_old_and_new_until_the_old_is_dropped(
    api: Api, stack: Stack, signed_company: Company, webhook_module: ModuleType
) -> None:
    new = "whsec_theRolledSecret0002"
    admin("webhook", "put-secret", "--company-id", signed_company.company_id, stdin=new)
    session = _paid_session(api, stack, signed_company, "booking-wh-roll")
    path = f"{WEBHOOK}/{signed_company.company_id}"
    payload = event_of("checkout.session.expired", {**session, "status": "expired"})

    assert deliver_signed(webhook_module, path, payload, SECRET)[0] == 200
    assert deliver_signed(webhook_module, path, payload, new)[0] == 200

    admin("webhook", "put-secret", "--company-id", signed_company.company_id, "--replace", stdin=new)
    webhook_module.SERVICE._refreshed.clear()  # the cache would otherwise keep the old set a while
    webhook_module.SERVICE._secrets._cached.clear()
    assert deliver_signed(webhook_module, path, payload, SECRET)[0] == 400
    assert deliver_signed(webhook_module, path, payload, new)[0] == 200


def test_a_body_that_is_no_stripe_event_and_an_unknown_endpoint_are_refused(
    signed_company: Company, webhook_module: ModuleType
) -> None:
    path = f"{WEBHOOK}/{signed_company.company_id}"
    assert deliver_signed(webhook_module, path, b'{"hello": "world"}')[0] == 400
    assert deliver_signed(webhook_module, path, b"not json")[0] == 400
    assert deliver_signed(webhook_module, f"{WEBHOOK}/{uuid.uuid4()}", event_of("x", {}))[0] == 400
    assert deliver_signed(webhook_module, f"{WEBHOOK}/not-a-company", event_of("x", {}))[0] == 404


def test_other_event_types_and_unknown_sessions_are_200_and_store_nothing(
    signed_company: Company, webhook_module: ModuleType
) -> None:
    path = f"{WEBHOOK}/{signed_company.company_id}"
    other = event_of("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    unknown = event_of(
        "checkout.session.completed",
        {
            "id": "cs_test_notOurs",
            "object": "checkout.session",
            "status": "complete",
            "payment_status": "paid",
        },
    )

    assert deliver_signed(webhook_module, path, other) == (200, {"Received": True, "Outcome": "ignored"})
    assert deliver_signed(webhook_module, path, unknown) == (200, {"Received": True, "Outcome": "ignored"})


# -- events from the emulator, end to end -------------------------------------------------------


def test_a_card_payment_marks_the_reference_paid_publishes_once_and_stops_new_checkouts(
    api: Api, stack: Stack, hooked: Company
) -> None:
    session_id = api.post(hooked.request("booking-wh-card")).json["SessionId"]

    stack.emulator.complete(session_id)
    settle(stack)
    [event] = [e for e in stack.emulator.events() if e["data"]["object"]["id"] == session_id]
    stack.emulator.deliver(event["id"])  # Stripe delivers at least once

    record = hooked.sessions("booking-wh-card")
    assert (record["payment_state"], record["paid_session_id"]) == ("paid", session_id)
    published = stack.booking_events(hooked.company_id)
    assert [e["detail-type"] for e in published] == ["Checkout Paid"]
    detail = published[0]["detail"]
    assert detail["SessionId"] == session_id and detail["InternalReferenceId"] == "booking-wh-card"
    assert (detail["AmountTotal"], detail["Currency"], detail["PaymentStatus"]) == (45000, "sek", "paid")
    assert detail["PaymentIntentId"].startswith("pi_")
    creates = len([r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions"])
    assert_error_body(api.post(hooked.request("booking-wh-card")), 409, "AlreadyPaid")
    assert len([r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions"]) == creates


def test_a_delayed_payment_is_processing_then_failed_and_payable_again(
    api: Api, stack: Stack, hooked: Company
) -> None:
    session_id = api.post(hooked.request("booking-wh-sepa")).json["SessionId"]

    stack.emulator.complete(session_id, delayed=True)
    settle(stack)
    assert hooked.sessions("booking-wh-sepa")["payment_state"] == "processing"
    assert_error_body(api.post(hooked.request("booking-wh-sepa")), 409, "PaymentProcessing")

    stack.emulator.settle(session_id, succeeded=False)
    settle(stack)

    assert hooked.sessions("booking-wh-sepa")["payment_state"] == "payable"
    assert types_of(stack, hooked) == ["Checkout Payment Failed"]
    assert api.post(hooked.request("booking-wh-sepa")).status == 200


def test_a_delayed_payment_that_settles_pays_the_reference(api: Api, stack: Stack, hooked: Company) -> None:
    session_id = api.post(hooked.request("booking-wh-sepa-ok")).json["SessionId"]

    stack.emulator.complete(session_id, delayed=True)
    settle(stack)
    stack.emulator.settle(session_id, succeeded=True)
    settle(stack)

    record = hooked.sessions("booking-wh-sepa-ok")
    assert (record["payment_state"], record["paid_session_id"]) == ("paid", session_id)
    assert types_of(stack, hooked) == ["Checkout Paid"]


def test_out_of_order_success_before_completion_ends_paid_with_one_event(
    api: Api, stack: Stack, hooked: Company
) -> None:
    session_id = api.post(hooked.request("booking-wh-order")).json["SessionId"]
    stack.emulator.pause_deliveries()
    try:
        stack.emulator.complete(session_id, delayed=True)
        stack.emulator.settle(session_id, succeeded=True)
        completed, succeeded = [e for e in stack.emulator.events() if e["data"]["object"]["id"] == session_id]
        stack.emulator.deliver(succeeded["id"])
        stack.emulator.deliver(completed["id"])  # late: says "unpaid", must not undo the success
    finally:
        stack.emulator.resume_deliveries()
    settle(stack)

    assert hooked.sessions("booking-wh-order")["payment_state"] == "paid"
    assert types_of(stack, hooked) == ["Checkout Paid"]


def test_a_current_session_stripe_expires_publishes_expired_and_a_late_expiry_never_unpays(
    api: Api, stack: Stack, hooked: Company
) -> None:
    lapsed = api.post(hooked.request("booking-wh-lapse")).json["SessionId"]
    stack.emulator.expire(lapsed)
    settle(stack)
    assert types_of(stack, hooked) == ["Checkout Expired"]
    assert hooked.sessions("booking-wh-lapse")["open_session_ids"] == []

    paid = api.post(hooked.request("booking-wh-paid")).json["SessionId"]
    stack.emulator.complete(paid)
    settle(stack)
    [completed] = [e for e in stack.emulator.events() if e["data"]["object"]["id"] == paid]
    stack.emulator.deliver(completed["id"])
    assert hooked.sessions("booking-wh-paid")["payment_state"] == "paid"
    assert types_of(stack, hooked) == ["Checkout Expired", "Checkout Paid"]


def test_a_superseded_session_expired_by_a_new_checkout_publishes_nothing(
    api: Api, stack: Stack, hooked: Company
) -> None:
    api.post(hooked.request("booking-wh-super"))
    api.post(hooked.request("booking-wh-super"))  # expires the first at Stripe: its event arrives
    settle(stack)

    assert types_of(stack, hooked) == []


def test_death_between_the_registry_write_and_the_publish_still_publishes_exactly_once(
    api: Api, stack: Stack, hooked: Company, webhook_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = api.post(hooked.request("booking-wh-death")).json["SessionId"]
    publisher = webhook_module.SERVICE._relay._publisher

    class Death(BaseException):
        """The function killed: nothing after this line runs."""

    deaths: list[str] = []

    def die_once(events: Any) -> None:
        if not deaths:
            deaths.append("died")
            raise Death()
        original(events)

    original = publisher.publish
    monkeypatch.setattr(publisher, "publish", die_once)

    stack.emulator.complete(session_id)  # first delivery dies after recording; Stripe retries
    settle(stack)

    assert deaths == ["died"]
    assert hooked.sessions("booking-wh-death")["payment_state"] == "paid"
    assert types_of(stack, hooked) == ["Checkout Paid"]


def test_the_connect_endpoint_applies_only_events_of_the_sessions_own_account(
    api: Api, stack: Stack, bridge: str, webhook_module: ModuleType
) -> None:
    company = onboard(stripe_account="acct_1WebhookConnect")
    admin("webhook", "create", "--connect", "--url", f"{bridge}{WEBHOOK}/connect",
          "--stripe-secret-key-stdin", stdin="sk_test_51TestKeyForTheEmulatorOnly000000000000")  # fmt: skip
    session_id = api.post(company.request("booking-wh-connect")).json["SessionId"]

    stack.emulator.complete(session_id, "acct_1WebhookConnect")
    settle(stack)

    assert company.sessions("booking-wh-connect")["payment_state"] == "paid"
    [event] = [
        e for e in stack.emulator.events("acct_1WebhookConnect") if e["data"]["object"]["id"] == session_id
    ]
    forged = json.dumps({**event, "account": "acct_someoneElse"}).encode()
    secret = next(e["secret"] for e in stack.emulator.webhook_endpoints() if e["url"].endswith("/connect"))
    assert deliver_signed(webhook_module, f"{WEBHOOK}/connect", forged, secret)[1]["Outcome"] == "ignored"
