"""One regression test per finding of the issue "Hostile input and faults: never a 500,
never a stuck reference", each for the class of input or fault, through the real handler
against moto and the Stripe emulator. docs/reliability.md lists them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from types import ModuleType
from typing import Any

import pytest

from checkout.domain import PendingAttempt, ReferenceKey
from checkout.request_decoding import MAX_BODY_BYTES
from localdev.apigw import rest_event
from tests.conftest import ROUTE, Api, Company, Stack, assert_invariant
from tests.fakes import checkout_spec
from tests.hostile.conftest import lease_write, use_fast_service
from tests.integration.test_checkout_api import assert_error_body

CREATE = r"^/v1/checkout/sessions$"


def assert_nothing_left(stack: Stack, company: Company, reference: str) -> None:
    """A refused request left no lease, no pending attempt and no session behind."""
    record = company.sessions(reference)
    assert (record["lease_held"], record["pending_attempts"], record["sessions"]) == (False, 0, [])
    assert not [s for s in stack.emulator.sessions() if s["client_reference_id"] == reference]


# -- lone surrogates --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["ConfirmationUrl", "CancelUrl", "InternalReferenceId", "CountryCode", "key"]
)
def test_a_lone_surrogate_anywhere_in_the_body_is_refused_and_the_reference_stays_payable(
    api: Api, company: Company, stack: Stack, field: str
) -> None:
    reference = f"surrogate-{uuid.uuid4().hex[:8]}"
    body = company.request(reference)
    if field == "key":
        body["Unknown\ud800"] = "x"
    elif field == "InternalReferenceId":
        body[field] = reference + "\ud800"
    else:
        body[field] = body[field] + "\ud800"

    for _ in range(2):  # the second time too: nothing was stored that could replay
        reply = api.send("POST", ROUTE, raw=json.dumps(body))
        assert_error_body(reply, 400, "SerializationException")
        assert "surrogate" in reply.json["ResponseStatus"]["Message"]

    assert_nothing_left(stack, company, reference)
    assert api.post(company.request(reference)).status == 200


def test_a_stored_attempt_that_cannot_be_sent_is_dropped_and_never_blocks_the_reference(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType
) -> None:
    # An attempt stored before the edge refused such text: its spec decodes, but Stripe
    # cannot be sent a lone surrogate.
    key = ReferenceKey(uuid.UUID(company.company_id), "booking-poisoned")
    registry = handler_module.SERVICES.checkout.registry
    assert api.post(company.request(key.reference)).status == 200
    spec = json.loads(registry.load(key).sessions and _spec_json(company, key.reference))
    spec["confirmation_url"] += "\ud800"
    poisoned = PendingAttempt(f"checkout-poison-{uuid.uuid4().hex}", json.dumps(spec), 1)
    with registry.reference(key, poisoned):
        pass  # the request died: the attempt stays

    for _ in range(2):
        reply = api.post(company.request(key.reference))
        assert reply.status == 200, reply.text

    record = assert_invariant(stack, company, key.reference)
    assert record["pending_attempts"] == 0


def _spec_json(company: Company, reference: str) -> str:
    return PendingAttempt.of("x", checkout_spec(uuid.UUID(company.company_id), reference), 0).spec_json


# -- lost answers and persistent failures after the lease ------------------------------------


def test_a_lost_answer_to_the_lease_write_is_recognised_as_our_own_lease(
    api: Api, company: Company, stack: Stack, fast: Any
) -> None:
    reference = f"lost-lease-{uuid.uuid4().hex[:8]}"
    fault = stack.aws.inject_fault("UpdateItem", reset=True, after=True, matching=lease_write(reference))

    reply = api.post(company.request(reference))

    assert fault.fired == 1
    assert reply.status == 200, reply.text
    record = assert_invariant(stack, company, reference)
    assert (record["lease_held"], record["pending_attempts"]) == (False, 0)


def test_a_lost_answer_to_the_commit_is_recognised_as_our_own_transaction(
    api: Api, company: Company, stack: Stack, fast: Any
) -> None:
    reference = f"lost-commit-{uuid.uuid4().hex[:8]}"
    fault = stack.aws.inject_fault("TransactWriteItems", reset=True, after=True, matching=reference)

    reply = api.post(company.request(reference))

    assert fault.fired == 1
    assert reply.status == 200, reply.text
    record = assert_invariant(stack, company, reference)
    assert record["current_session_id"] == reply.json["SessionId"]
    assert record["open_session_ids"] == [reply.json["SessionId"]]


def test_a_request_that_fails_after_taking_the_lease_gives_it_back(
    api: Api, company: Company, stack: Stack, fast: Any
) -> None:
    reference = f"gives-back-{uuid.uuid4().hex[:8]}"
    stack.aws.inject_fault("TransactWriteItems", "InternalServerError", matching=reference, count=99)

    failed = api.post(company.request(reference))

    assert_error_body(failed, 503, "AwsUnavailable")
    assert failed.headers["Retry-After"] == "2"
    assert company.sessions(reference)["lease_held"] is False
    stack.aws.clear_faults()
    assert api.post(company.request(reference)).status == 200
    assert_invariant(stack, company, reference)


def test_after_every_aws_call_failed_the_next_request_in_another_container_pays_within_10_seconds(
    api: Api,
    company: Company,
    stack: Stack,
    fast: Any,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = f"ghost-{uuid.uuid4().hex[:8]}"
    # The lease write is applied but its answer never arrives, and nothing else gets
    # through either: the request cannot even give the lease back.
    for operation in ("UpdateItem", "GetItem", "TransactWriteItems", "PutItem"):
        stack.aws.inject_fault(operation, reset=True, after=True, matching=reference, count=999)

    failed = api.post(company.request(reference))

    assert_error_body(failed, 503, "AwsUnavailable")
    stack.aws.clear_faults()
    fault_gone = time.monotonic()
    use_fast_service(monkeypatch, handler_module)  # the next request lands in a new container
    while (reply := api.post(company.request(reference))).status == 409:
        assert reply.json["ResponseStatus"]["ErrorCode"] == "CheckoutInProgress"
        assert time.monotonic() - fault_gone < 10, "the reference is still held"
        time.sleep(0.25)

    assert reply.status == 200, reply.text
    assert time.monotonic() - fault_gone < 10
    assert_invariant(stack, company, reference)


# -- hostile bodies ------------------------------------------------------------------


def _event(body: str, *, base64_encoded: bool = False) -> dict[str, Any]:
    event = rest_event("POST", ROUTE, "x", headers={"Content-Type": "application/json"})
    event["body"], event["isBase64Encoded"] = body, base64_encoded
    return event


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("nested 50,000 deep", _event("[" * 50_000 + "]" * 50_000)),
        ("nested 900 deep in a property", _event('{"CountryCode":' + "[" * 900 + "]" * 900 + "}")),
        ("an integer of 5,000 digits", _event('{"Articles":[{"ArticleId":' + "9" * 5000 + "}]}")),
        ("a digit string of 5,000 digits", _event('{"Articles":[{"ArticleId":"' + "9" * 5000 + '"}]}')),
        ("NaN", _event('{"Articles":[{"ArticleId":NaN}]}')),
        ("base64 that is not base64", _event("!!!not base64!!!", base64_encoded=True)),
        (
            "base64 of bytes that are not UTF-8",
            _event(base64.b64encode(b'{"CompanyId":"\xff\xfe"}').decode(), base64_encoded=True),
        ),
        ("a body over the limit", _event(json.dumps({"InternalReferenceId": "r" * MAX_BODY_BYTES}))),
    ],
)
def test_hostile_bodies_are_a_400_with_the_contract_body(api: Api, name: str, event: dict[str, Any]) -> None:
    reply = api.invoke(event)

    assert reply.status == 400, (name, reply.text)
    assert reply.json["ResponseStatus"]["ErrorCode"] and reply.json["ResponseStatus"]["Message"]


def test_a_json_array_of_requests_is_a_400(api: Api, company: Company, stack: Stack) -> None:
    reference = f"array-{uuid.uuid4().hex[:8]}"

    reply = api.send("POST", ROUTE, raw=json.dumps([company.request(reference)]))

    assert_error_body(reply, 400, "SerializationException")
    assert_nothing_left(stack, company, reference)


@pytest.mark.parametrize("quantity", [True, "many", 1.5, None, [1], {"n": 1}])
def test_a_quantity_that_is_not_an_integer_is_a_400_not_a_checkout_for_one(
    api: Api, company: Company, stack: Stack, quantity: Any
) -> None:
    reference = f"quantity-{uuid.uuid4().hex[:8]}"

    reply = api.post(
        company.request(reference, Articles=[{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": quantity}])
    )

    assert_error_body(reply, 400, "InclusiveBetween", "Articles[0].Quantity")
    assert_nothing_left(stack, company, reference)


def test_thousands_of_invalid_articles_are_a_small_400_naming_the_limit(api: Api, company: Company) -> None:
    articles: list[dict[str, Any]] = [{}] * 5000  # each one invalid three times over

    reply = api.post(company.request(Articles=articles))

    status = assert_error_body(reply, 400, "Predicate", "Articles")
    assert status["Message"] == "'Articles' must have at most 100 items. You entered 5000 items."
    assert len(reply.text) < 1000


# -- Stripe's rate limit ---------------------------------------------------------------


def test_stripe_rate_limiting_once_is_retried(api: Api, company: Company, stack: Stack, fast: Any) -> None:
    reference = f"rate-limited-{uuid.uuid4().hex[:8]}"
    stack.emulator.inject_fault("POST", CREATE, 429)

    reply = api.post(company.request(reference))

    assert reply.status == 200, reply.text
    creates = [
        r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions" and r.method == "POST"
    ]
    assert [r.status for r in creates[-2:]] == [429, 200]
    assert creates[-1].headers["idempotency-key"] == creates[-2].headers["idempotency-key"]
    assert_invariant(stack, company, reference)
