"""Faults at every step: Stripe errors and timeouts, rotated keys, crashes, lost leases.

After each, the contract's invariant is checked: at most one open session for the
reference at Stripe, it is the current one, and every session created is recorded.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from checkout.composition import build_services
from checkout.config import Config
from checkout.domain import PendingAttempt, ReferenceKey
from checkout.errors import UpstreamFailure
from tests.conftest import Api, Company, Stack, admin, assert_invariant
from tests.fakes import checkout_spec
from tests.integration.test_checkout_api import assert_error_body

# A spec for attempts the tests store themselves (another invocation's).
SPEC = checkout_spec(uuid.UUID(int=1), "x")
CREATE = r"^/v1/checkout/sessions$"
EXPIRE = r"/expire$"


@pytest.fixture(autouse=True)
def _no_leftover_faults(stack: Stack) -> Iterator[None]:
    yield
    stack.emulator.clear_faults()


def use_service(monkeypatch: pytest.MonkeyPatch, handler_module: ModuleType, **overrides: Any) -> Any:
    """Swap in a service built with other configuration (timeouts, retries, lease)."""
    services = build_services(dataclasses.replace(Config.from_env(), **overrides))
    monkeypatch.setattr(handler_module, "SERVICES", services)
    return services.checkout


def test_a_stripe_5xx_is_retried_with_the_same_idempotency_key(
    api: Api, company: Company, stack: Stack
) -> None:
    stack.emulator.inject_fault("POST", CREATE, 500)

    reply = api.post(company.request("booking-retry"))

    assert reply.status == 200, reply.text
    creates = [
        r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions" and r.method == "POST"
    ]
    assert creates[-1].headers["idempotency-key"] == creates[-2].headers["idempotency-key"]
    assert [r.status for r in creates[-2:]] == [500, 200]
    assert_invariant(stack, company, "booking-retry")


def test_a_lost_create_response_does_not_create_a_second_session(
    api: Api, company: Company, stack: Stack
) -> None:
    stack.emulator.inject_fault("POST", CREATE, 500, after=True)

    reply = api.post(company.request("booking-lost-response"))

    assert reply.status == 200, reply.text
    record = assert_invariant(stack, company, "booking-lost-response")
    assert len(record["sessions"]) == 1


def test_stripe_down_is_a_502_with_stripe_request_id_and_the_next_request_recovers(
    api: Api, company: Company, stack: Stack
) -> None:
    stack.emulator.inject_fault("POST", CREATE, 500, count=3, after=True)  # created, but every answer lost

    down = api.post(company.request("booking-down"))

    status = assert_error_body(down, 502, "StripeError")
    assert "Stripe request id" not in status["Message"] or "req_" in status["Message"]
    assert company.sessions("booking-down")["pending_attempts"] == 1
    created_while_down = [s for s in stack.emulator.sessions() if s["client_reference_id"] == "booking-down"]
    assert len(created_while_down) == 1  # Stripe made it; the service must not lose it

    recovered = api.post(company.request("booking-down"))

    assert recovered.status == 200, recovered.text
    record = assert_invariant(stack, company, "booking-down")
    assert record["pending_attempts"] == 0
    assert [s["status"] for s in record["sessions"]] == ["expired", "open"]
    assert record["sessions"][0]["session_id"] == created_while_down[0]["id"]


def test_stripe_refusing_the_checkout_is_a_502_with_its_message_and_nothing_pending(
    api: Api, stack: Stack
) -> None:
    odd = onboard_with_article(currency="XTS")  # a currency Stripe does not take

    reply = api.post(odd.request("booking-refused"))

    status = assert_error_body(reply, 502, "StripeRejected")
    assert "Stripe request id: req_" in status["Message"]
    assert odd.sessions("booking-refused")["pending_attempts"] == 0


def test_stripe_rate_limiting_is_a_503(api: Api, company: Company, stack: Stack) -> None:
    stack.emulator.inject_fault("POST", CREATE, 429, count=5)

    assert_error_body(api.post(company.request("booking-429")), 503, "StripeThrottled")


def test_stripe_timeout_is_a_504_and_the_late_session_is_recovered(
    api: Api,
    company: Company,
    stack: Stack,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_service(monkeypatch, handler_module, stripe_timeout_seconds=0.3, stripe_max_network_retries=0)
    stack.emulator.inject_fault("POST", CREATE, 0, delay=0.8)  # answers, but too late

    timed_out = api.post(company.request("booking-slow"))

    assert_error_body(timed_out, 504, "StripeTimeout")
    time.sleep(0.8)  # the emulator finishes creating the session the client gave up on
    assert api.post(company.request("booking-slow")).status == 200
    record = assert_invariant(stack, company, "booking-slow")
    assert [s["status"] for s in record["sessions"]] == ["expired", "open"]


def test_expiry_failing_closes_the_new_session_and_keeps_the_prior_current(
    api: Api, company: Company, stack: Stack
) -> None:
    first = api.post(company.request("booking-expire-fails")).json["SessionId"]
    stack.emulator.inject_fault("POST", EXPIRE, 503, count=3)  # the prior's expiry, with retries

    reply = api.post(company.request("booking-expire-fails"))

    assert_error_body(reply, 502, "StripeError")
    record = assert_invariant(stack, company, "booking-expire-fails")
    assert record["current_session_id"] == first
    assert [(s["session_id"] == first, s["status"]) for s in record["sessions"]] == [
        (True, "open"),
        (False, "expired"),  # created beside the failing expiry, then closed again
    ]
    assert record["open_session_ids"] == [first]


def test_several_open_sessions_are_all_expired(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType
) -> None:
    # Three sessions open at Stripe and in the registry, as after expiries that failed.
    reference = "booking-many"
    registry = handler_module.SERVICES.checkout.registry
    key = ReferenceKey(uuid.UUID(company.company_id), reference)
    for _ in range(3):
        api.post(company.request(reference))
    pk = f"REFERENCE#{key.company_id}#{reference}"
    sessions = registry.load(key).sessions
    for session in sessions:
        stack.emulator._state.sessions[("", session.session_id)]["status"] = "open"
        registry._client.update_item(
            TableName=registry._table,
            Key={"pk": {"S": pk}, "sk": {"S": f"SESSION#{session.session_id}"}},
            UpdateExpression="SET #s = :open, #t = :open",
            ExpressionAttributeNames={"#s": "status", "#t": "state"},
            ExpressionAttributeValues={":open": {"S": "open"}},
        )
    registry._client.update_item(
        TableName=registry._table,
        Key={"pk": {"S": pk}, "sk": {"S": "HEAD"}},
        UpdateExpression="SET open_sessions = :open",
        ExpressionAttributeValues={":open": {"M": {s.session_id: {"M": {}} for s in sessions}}},
    )

    reply = api.post(company.request(reference))

    assert reply.status == 200
    record = assert_invariant(stack, company, reference)
    assert [s["status"] for s in record["sessions"]] == ["expired", "expired", "expired", "open"]
    expiries = [r for r in stack.emulator.requests() if r.path.endswith("/expire")][-3:]
    assert {r.path.split("/")[-2] for r in expiries} == {s["session_id"] for s in record["sessions"][:3]}


def test_a_rotated_key_is_fetched_again_once(api: Api, company: Company, stack: Stack) -> None:
    assert api.post(company.request("booking-rotate-1")).status == 200  # caches the old key
    new_key = f"sk_test_51Rotated{uuid.uuid4().hex}"
    admin(
        "company", "put", "--company-id", company.company_id, "--allowed-url-prefix", "https://booking.example.com/",
        "--stripe-secret-key-stdin", stdin=new_key,
    )  # fmt: skip
    stack.emulator.revoke_key("sk_test_51TestKeyForTheEmulatorOnly000000000000")
    try:
        reply = api.post(company.request("booking-rotate-2"))
    finally:
        stack.emulator._state.revoked_keys.clear()

    assert reply.status == 200, reply.text
    last = stack.emulator.requests()[-1]
    assert last.headers["authorization"] == f"Bearer {new_key}"


def test_a_key_stripe_refuses_even_after_refetching_is_a_clear_502(
    api: Api, company: Company, stack: Stack
) -> None:
    stack.emulator.revoke_key("sk_test_51TestKeyForTheEmulatorOnly000000000000")
    try:
        reply = api.post(company.request("booking-bad-key"))
    finally:
        stack.emulator._state.revoked_keys.clear()

    status = assert_error_body(reply, 502, "StripeCredentials")
    assert "sk_" not in reply.text
    assert "credentials" in status["Message"]
    assert company.sessions("booking-bad-key")["pending_attempts"] == 0


def test_a_company_whose_secret_is_missing_gets_a_502(api: Api, stack: Stack) -> None:
    from tests.conftest import onboard

    keyless = onboard(key=None)

    assert_error_body(api.post(keyless.request()), 502, "StripeCredentials")


def test_another_request_holding_the_reference_gives_409_in_progress(
    api: Api, company: Company, handler_module: ModuleType
) -> None:
    key = ReferenceKey(uuid.UUID(company.company_id), "booking-held")
    registry = handler_module.SERVICES.checkout.registry
    spec = dataclasses.replace(SPEC, company_id=key.company_id, reference=key.reference)
    with registry.reference(key, PendingAttempt.of("another-invocation", spec, 0)) as held:
        reply = api.post(company.request("booking-held"))
        held.release(keep_attempts=())

    assert_error_body(reply, 409, "CheckoutInProgress")
    assert reply.headers["Retry-After"] == "1"
    assert api.post(company.request("booking-held")).status == 200


def test_a_crash_between_stripe_and_the_registry_is_recovered_by_the_next_request(
    api: Api,
    company: Company,
    stack: Stack,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = use_service(monkeypatch, handler_module, lease_seconds=1)
    registry = service._registry

    class Crash(BaseException):
        """The Lambda dying: nothing after it runs, not even `finally` blocks' writes."""

    def crash(*args: Any, **kwargs: Any) -> None:
        raise Crash()

    with monkeypatch.context() as during_crash:
        during_crash.setattr(registry, "_commit", crash)
        during_crash.setattr(registry, "_release", lambda *a: None)
        with pytest.raises(Crash):
            api.post(company.request("booking-crash"))

    orphan = [s for s in stack.emulator.sessions() if s["client_reference_id"] == "booking-crash"]
    assert [s["status"] for s in orphan] == ["open"]  # created at Stripe, unknown to the registry
    assert company.sessions("booking-crash")["pending_attempts"] == 1
    assert_error_body(
        api.post(company.request("booking-crash")), 409, "CheckoutInProgress"
    )  # lease still held
    time.sleep(1.1)  # the crashed invocation's lease runs out

    reply = api.post(company.request("booking-crash"))

    assert reply.status == 200, reply.text
    record = assert_invariant(stack, company, "booking-crash")
    assert record["sessions"][0]["session_id"] == orphan[0]["id"]
    assert [s["status"] for s in record["sessions"]] == ["expired", "open"]


def test_registry_unavailable_after_create_closes_the_session_and_answers_503(
    api: Api,
    company: Company,
    stack: Stack,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = handler_module.SERVICES.checkout.registry

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise UpstreamFailure("AwsUnavailable", "DynamoDB is unavailable; please retry.")

    with monkeypatch.context() as outage:
        outage.setattr(registry, "_commit", unavailable)
        reply = api.post(company.request("booking-ddb"))

    assert_error_body(reply, 503, "AwsUnavailable")
    made = [s for s in stack.emulator.sessions() if s["client_reference_id"] == "booking-ddb"]
    assert [s["status"] for s in made] == ["expired"]  # not payable while unrecorded
    assert api.post(company.request("booking-ddb")).status == 200
    record = assert_invariant(stack, company, "booking-ddb")
    assert record["sessions"][0]["session_id"] == made[0]["id"]


def test_a_lease_lost_before_recording_expires_and_records_the_session(
    api: Api,
    company: Company,
    stack: Stack,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = handler_module.SERVICES.checkout.registry
    original = registry._commit
    key = ReferenceKey(uuid.UUID(company.company_id), "booking-overtaken")

    def overtaken(*args: Any, **kwargs: Any) -> None:
        # Another invocation takes the reference over (our lease ran out) just before we record.
        registry._client.update_item(
            TableName=registry._table,
            Key=registry._head_key(key),
            UpdateExpression="SET lease_owner = :other",
            ExpressionAttributeValues={":other": {"S": "someone-else"}},
        )
        original(*args, **kwargs)

    monkeypatch.setattr(registry, "_commit", overtaken)

    reply = api.post(company.request("booking-overtaken"))

    assert_error_body(reply, 409, "CheckoutInProgress")
    record = assert_invariant(stack, company, "booking-overtaken")
    assert [s["status"] for s in record["sessions"]] == ["expired"]
    assert record["current_session_id"] is None


def onboard_with_article(currency: str) -> Company:
    from tests.conftest import onboard

    company = onboard()
    admin(
        "article", "put", "--company-id", company.company_id, "--article-type-id", "1", "--article-id", "42",
        "--name", "Odd", "--unit-amount", "100", "--currency", currency,
    )  # fmt: skip
    return company
