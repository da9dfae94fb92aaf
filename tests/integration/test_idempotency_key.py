"""The optional Idempotency-Key header of the checkout (Powertools Idempotency on DynamoDB)."""

from __future__ import annotations

import uuid

from localdev.remote_calls import DYNAMODB, CallLog
from tests.conftest import Api, Company, Stack
from tests.integration.test_checkout_api import assert_error_body

CREATE = r"^/v1/checkout/sessions$"


def creates(stack: Stack) -> int:
    return sum(
        1 for r in stack.emulator.requests() if r.method == "POST" and r.path == "/v1/checkout/sessions"
    )


def with_key(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Idempotency-Key": key}


def test_the_same_key_and_request_answer_the_first_answer_with_no_new_side_effect(
    api: Api, company: Company, stack: Stack
) -> None:
    key, body = f"order-{uuid.uuid4()}", company.request()
    first = api.post(body, headers=with_key(key))
    calls = len(stack.emulator.requests())

    again = api.post(body, headers=with_key(key))

    assert first.status == again.status == 200, again.text
    assert again.json == first.json
    assert len(stack.emulator.requests()) == calls  # Stripe was not asked again
    record = company.sessions(body["InternalReferenceId"])
    assert [s["session_id"] for s in record["sessions"]] == [first.json["SessionId"]]


def test_the_same_key_with_another_request_is_a_422(api: Api, company: Company, stack: Stack) -> None:
    key = f"order-{uuid.uuid4()}"
    assert api.post(company.request("booking-a"), headers=with_key(key)).status == 200
    before = creates(stack)

    reply = api.post(company.request("booking-b"), headers=with_key(key))

    status = assert_error_body(reply, 422, "IdempotencyKeyReused")
    assert "Idempotency-Key" in status["Message"]
    assert creates(stack) == before


def test_a_failed_request_may_be_sent_again_with_its_key(api: Api, company: Company, stack: Stack) -> None:
    key, body = f"order-{uuid.uuid4()}", company.request()
    stack.emulator.inject_fault("POST", CREATE, 400)
    try:
        assert api.post(body, headers=with_key(key)).status == 502
    finally:
        stack.emulator.clear_faults()

    assert api.post(body, headers=with_key(key)).status == 200


def test_a_key_that_is_not_printable_ascii_is_a_400(api: Api, company: Company) -> None:
    for key in ("", "x" * 256, "with space", "ключ"):
        assert_error_body(api.post(company.request(), headers=with_key(key)), 400, "InvalidIdempotencyKey")


def test_only_requests_with_a_key_touch_the_idempotency_table(
    api: Api, company: Company, stack: Stack
) -> None:
    calls = CallLog()
    before, stack.aws.calls = stack.aws.calls, calls
    try:
        assert api.post(company.request()).status == 200  # settings and key cached, as when warm
        plain = calls.mark()
        assert api.post(company.request()).status == 200
        without = [c.operation for c in calls.since(plain) if c.service == DYNAMODB]
        keyed = calls.mark()
        assert api.post(company.request(), headers=with_key(f"k-{uuid.uuid4()}")).status == 200
        with_header = [c.operation for c in calls.since(keyed) if c.service == DYNAMODB]
    finally:
        stack.aws.calls = before

    assert sorted(without) == ["TransactWriteItems", "UpdateItem"]  # one trip to Stripe, two to DynamoDB
    # With a key: the in-progress record before, its completion after.
    assert sorted(with_header) == ["PutItem", "TransactWriteItems", "UpdateItem", "UpdateItem"]
