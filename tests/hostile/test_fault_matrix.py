"""The fault matrix: every remote call on a request's path x every way it can fail, once
and persistently (docs/reliability.md).

For each case of the checkout and status operations: the faulted request's answer
(status, ErrorCode, Retry-After), then, with the fault gone, the next request for the
same reference succeeds within 10 seconds, and the contract's invariant holds at the
emulator and in the registry (every created session recorded in its state, at most one
open, the current one; no lease held, no attempt pending).

For each case of the webhook receiver: a delivery that met a fault it could not ride
out is a 5xx, so Stripe delivers it again; once the fault is gone the delivery is a 200,
the reference is paid, and its booking event was published and left the outbox.

For each call of a reconciler pass that repairs a lost payment: the pass never raises
and counts what it could not do; the next pass, with the fault gone, repairs the rest.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from checkout.aws_clients import dynamodb_client
from checkout.composition import build_reconciler, build_webhook_service
from checkout.config import Config
from checkout.domain import ReferenceKey
from checkout.session_registry import DynamoSessionRegistry
from localdev.apigw import LocalContext, rest_event
from localdev.emulator_webhooks import signature_header
from tests.conftest import Api, Company, Reply, Stack, admin, assert_invariant, onboard
from tests.hostile.conftest import (
    LATE,
    TIMEOUT,
    lease_write,
    wait_for_background_work,
)

STATUS_ROUTE = "/payment/stripe/v1/checkout/status"
PERSISTENT = 999


@dataclass(frozen=True)
class Case:
    """One remote call of a request's path; `matching` picks it out by its request."""

    name: str
    system: str  # "aws" or "stripe"
    operation: str  # AWS operation, or the Stripe call's HTTP method
    matching: Callable[[Company, str, str], str]  # (company, reference, session id) -> pattern
    status_operation: bool = False  # a call of the status operation, not of the checkout


CALLS = [
    Case("settings and articles", "aws", "BatchGetItem", lambda c, r, s: f"COMPANY#{c.company_id}"),
    Case("secret", "aws", "GetSecretValue", lambda c, r, s: c.company_id),
    Case("lease", "aws", "UpdateItem", lambda c, r, s: lease_write(r)),
    Case("Stripe expire", "stripe", "POST", lambda c, r, s: rf"^/v1/checkout/sessions/{s}/expire$"),
    Case("Stripe create", "stripe", "POST", lambda c, r, s: r"^/v1/checkout/sessions$"),
    Case("registry commit", "aws", "TransactWriteItems", lambda c, r, s: re.escape(r)),
    Case("status: find", "aws", "Query", lambda c, r, s: s, status_operation=True),
    Case("status: record", "aws", "GetItem", lambda c, r, s: f"SESSION#{s}", status_operation=True),
    Case("status: settings", "aws", "BatchGetItem", lambda c, r, s: f"COMPANY#{c.company_id}", True),
    Case("status: Stripe retrieve", "stripe", "GET", lambda c, r, s: rf"^/v1/checkout/sessions/{s}$", True),
    Case("status: read the news", "aws", "TransactGetItems", lambda c, r, s: s, status_operation=True),
    Case("status: record the news", "aws", "TransactWriteItems", lambda c, r, s: s, status_operation=True),
]

# fault -> (AWS injection, Stripe injection) keyword arguments
FAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "5xx": ({"error": "InternalServerError"}, {"status": 500}),
    "throttled": ({"error": "ProvisionedThroughputExceededException"}, {"status": 429}),
    "timeout before acting": ({"delay": LATE}, {"status": 0, "delay": LATE}),
    "timeout after acting": ({"delay": LATE, "after": True}, {"status": 0, "delay": LATE, "after": True}),
    "connection reset": ({"reset": True}, {"reset": True}),
    "answer lost": ({"reset": True, "after": True}, {"reset": True, "after": True}),
    "auth failure": ({"error": "AccessDeniedException"}, {"status": 401}),
}

# What a persistent fault answers: fault -> (AWS, Stripe) (status, ErrorCode).
PERSISTENT_ANSWERS = {
    "5xx": ((503, "AwsUnavailable"), (502, "StripeError")),
    "throttled": ((503, "AwsThrottled"), (503, "StripeThrottled")),
    "timeout before acting": ((504, "AwsTimeout"), (504, "StripeTimeout")),
    "timeout after acting": ((504, "AwsTimeout"), (504, "StripeTimeout")),
    "connection reset": ((503, "AwsUnavailable"), (502, "StripeUnreachable")),
    "answer lost": ((503, "AwsUnavailable"), (502, "StripeUnreachable")),
    "auth failure": ((502, "AwsAccessDenied"), (502, "StripeCredentials")),
}


def expected(case: Case, fault: str, persistent: bool) -> tuple[int, str | None]:
    """The answer the faulted request gets (see also `acceptable`)."""
    aws = case.system == "aws"
    if fault == "auth failure" and aws and case.name != "secret":
        return 502, "AwsAccessDenied"  # not retried: a refusal, the role lacks a permission
    if not persistent:  # the key's fetch is started early and asked again when Stripe is called
        return 200, None  # retried, and the retry went through
    if case.name == "registry commit" and fault in {"timeout after acting", "answer lost"}:
        return 200, None  # the first try was applied; the head's last_commit says so
    if case.name == "secret" and fault == "auth failure":
        return 502, "StripeCredentials"
    aws_answer, stripe_answer = PERSISTENT_ANSWERS[fault]
    return aws_answer if aws else stripe_answer


def acceptable(case: Case, fault: str, persistent: bool) -> set[tuple[int, str | None]]:
    """Every answer the faulted request may get: a commit that is late on every try may
    land before the last try gives up, and the request then finds it applied."""
    answers = {expected(case, fault, persistent)}
    if case.name == "registry commit" and fault == "timeout before acting" and persistent:
        answers.add((200, None))
    return answers


@pytest.fixture(scope="module")
def matrix_company(stack: Stack) -> Company:
    return onboard()


def checkout(api: Api, company: Company, reference: str) -> Reply:
    return api.post(company.request(reference))


def status(api: Api, company: Company, session_id: str) -> Reply:
    return api.send("POST", STATUS_ROUTE, {"CompanyId": company.company_id, "SessionId": session_id})


def until_answered(send: Callable[[], Reply], seconds: float = 10.0) -> Reply:
    """The next request, repeated while the reference is still held (409 with Retry-After)."""
    deadline = time.monotonic() + seconds
    while True:
        reply = send()
        if reply.status != 409 or reply.json["ResponseStatus"]["ErrorCode"] != "CheckoutInProgress":
            return reply
        assert time.monotonic() < deadline, "the reference stayed held after the fault was gone"
        time.sleep(0.25)


@pytest.fixture(autouse=True)
def _settle(stack: Stack) -> Iterator[None]:
    yield
    stack.aws.clear_faults()
    stack.emulator.clear_faults()
    wait_for_background_work()


def inject(stack: Stack, case: Case, fault: str, pattern: str, count: int) -> Callable[[], int]:
    """Inject the fault; returns how many calls it hit so far."""
    aws_kwargs, stripe_kwargs = FAULTS[fault]
    if case.system == "aws":
        injected = stack.aws.inject_fault(case.operation, matching=pattern, count=count, **aws_kwargs)
        return lambda: injected.fired
    stack.emulator.inject_fault(case.operation, pattern, count=count, **stripe_kwargs)
    fault_entry = stack.emulator._state.faults[-1]
    return lambda: count - fault_entry.remaining


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("case", CALLS, ids=[c.name for c in CALLS])
def test_fault(
    api: Api, fast: Any, stack: Stack, matrix_company: Company, case: Case, fault: str, persistent: bool
) -> None:
    company = matrix_company
    reference = f"fault-{uuid.uuid4().hex[:12]}"
    session_id = "cs_none"
    if case.status_operation or case.name == "Stripe expire":
        prior = checkout(api, company, reference)  # a session to ask about, or to expire
        assert prior.status == 200, prior.text
        session_id = prior.json["SessionId"]
    if case.status_operation:
        stack.emulator.complete(session_id, deliver=False)  # news the status call must record
        send: Callable[[], Reply] = lambda: status(api, company, session_id)  # noqa: E731
    else:
        send = lambda: checkout(api, company, reference)  # noqa: E731
    fired = inject(
        stack, case, fault, case.matching(company, reference, session_id), PERSISTENT if persistent else 1
    )

    reply = send()

    assert fired() >= 1, "the fault never hit its call"
    code = reply.json["ResponseStatus"]["ErrorCode"] if reply.status != 200 else None
    assert (reply.status, code) in acceptable(case, fault, persistent), reply.text
    if code is not None:
        assert reply.json["ResponseStatus"]["Message"]
        retryable = code not in {"AwsAccessDenied", "StripeCredentials"}
        assert ("Retry-After" in reply.headers) == retryable, reply.headers

    # The fault is gone; anything it delayed lands; the next request gets through.
    stack.aws.clear_faults()
    stack.emulator.clear_faults()
    if "timeout" in fault:
        time.sleep(LATE)
    wait_for_background_work()
    after = until_answered(send)
    assert after.status == 200, after.text
    if case.status_operation:
        assert after.json["Status"] == "complete"
        assert after.json["PaymentStatus"] == "paid"
        assert company.sessions(reference)["payment_state"] == "paid"
    record = assert_invariant(stack, company, reference)
    assert (record["lease_held"], record["pending_attempts"]) == (False, 0)


# -- the webhook receiver ----------------------------------------------------------------

WEBHOOK_SECRET = "whsec_faultMatrixSecret0001"
WEBHOOK_CALLS = [
    Case("webhook: signing secret", "aws", "GetSecretValue", lambda c, r, s: f"webhook/{c.company_id}"),
    Case("webhook: find", "aws", "Query", lambda c, r, s: s),
    Case("webhook: record", "aws", "GetItem", lambda c, r, s: f"SESSION#{s}"),
    Case("webhook: read the news", "aws", "TransactGetItems", lambda c, r, s: s),
    Case("webhook: record the news", "aws", "TransactWriteItems", lambda c, r, s: s),
    Case("webhook: publish the booking event", "aws", "AWSEvents.PutEvents", lambda c, r, s: s),
    Case(
        "webhook: settle the outbox", "aws", "UpdateItem", lambda c, r, s: f"(?=.*outbox)(?=.*{re.escape(r)})"
    ),
]


def expected_delivery(case: Case, fault: str, persistent: bool) -> set[int]:
    """The faulted delivery's status: 200 when it rode the fault out, else a 5xx, and
    Stripe delivers again: a signing secret the function may not read is the deployment's
    fault (502), never the sender's (400)."""
    if not persistent and fault != "auth failure":
        return {200}  # retried
    if fault == "auth failure":
        return {502}  # AwsAccessDenied: not retried, the role lacks a permission
    if case.name == "webhook: record the news" and fault in {"timeout after acting", "answer lost"}:
        return {200, *_FIVE_XX}  # the write was applied; a re-read may see it
    return _FIVE_XX


_FIVE_XX = {502, 503, 504}


@pytest.fixture(scope="module")
def hooked_company(stack: Stack) -> Company:
    company = onboard()
    admin("webhook", "put-secret", "--company-id", company.company_id, stdin=WEBHOOK_SECRET)
    return company


@pytest.fixture
def webhook_module(stack: Stack, fast: Any, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The webhook function, with the fast clients `fast` set up and no secret cache."""
    module = importlib.import_module("handlers.stripe_webhook")
    config = dataclasses.replace(Config.from_env(), secret_cache_seconds=0)
    monkeypatch.setattr(module, "SERVICE", build_webhook_service(config))
    return module


def deliver(module: ModuleType, company: Company, session: dict[str, Any], event_id: str) -> int:
    payload = json.dumps(
        {"id": event_id, "object": "event", "type": "checkout.session.completed", "data": {"object": session}}
    ).encode()
    header = signature_header(payload, WEBHOOK_SECRET, int(time.time()))
    path = f"/payment/stripe/v1/webhook/{company.company_id}"
    answer = module.lambda_handler(
        rest_event("POST", path, payload, headers={"Stripe-Signature": header}), LocalContext()
    )
    body = json.loads(answer["body"])
    if answer["statusCode"] >= 400:
        assert body["ResponseStatus"]["ErrorCode"] and body["ResponseStatus"]["Message"]
    status: int = answer["statusCode"]
    return status


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("case", WEBHOOK_CALLS, ids=[c.name for c in WEBHOOK_CALLS])
def test_webhook_fault(
    api: Api,
    stack: Stack,
    hooked_company: Company,
    webhook_module: ModuleType,
    handler_module: ModuleType,
    case: Case,
    fault: str,
    persistent: bool,
) -> None:
    company = hooked_company
    reference = f"hook-{uuid.uuid4().hex[:12]}"
    created = checkout(api, company, reference)
    assert created.status == 200, created.text
    session_id = created.json["SessionId"]
    session = stack.emulator.complete(session_id, deliver=False)
    event_id = f"evt_{uuid.uuid4().hex}"
    fired = inject(
        stack, case, fault, case.matching(company, reference, session_id), PERSISTENT if persistent else 1
    )

    status = deliver(webhook_module, company, session, event_id)

    assert fired() >= 1, "the fault never hit its call"
    assert status in expected_delivery(case, fault, persistent)

    stack.aws.clear_faults()
    if "timeout" in fault:
        time.sleep(LATE)
    assert deliver(webhook_module, company, session, event_id) == 200  # Stripe delivers again
    assert company.sessions(reference)["payment_state"] == "paid"
    registry = handler_module.SERVICES.checkout.registry
    assert registry.owed_events(ReferenceKey(uuid.UUID(company.company_id), reference)) == []
    published = [
        e for e in stack.booking_events(company.company_id) if e["detail"]["SessionId"] == session_id
    ]
    assert "Checkout Paid" in [e["detail-type"] for e in published]
    assert_invariant(stack, company, reference)


# -- the reconciler ------------------------------------------------------------------------------

# The calls of a pass that repairs one lost payment, in the order it makes them.
RECONCILER_CALLS = [
    Case("reconciler: find what is due", "aws", "Query", lambda c, r, s: r"due-for-reconcile.*due_at_ms"),
    Case("reconciler: load the reference", "aws", "Query", lambda c, r, s: f"REFERENCE#{c.company_id}#{r}"),
    Case("reconciler: settings", "aws", "BatchGetItem", lambda c, r, s: f"COMPANY#{c.company_id}"),
    Case("reconciler: key", "aws", "GetSecretValue", lambda c, r, s: c.company_id),
    Case("reconciler: Stripe retrieve", "stripe", "GET", lambda c, r, s: rf"^/v1/checkout/sessions/{s}$"),
    Case("reconciler: read the news", "aws", "TransactGetItems", lambda c, r, s: s),
    Case("reconciler: record the news", "aws", "TransactWriteItems", lambda c, r, s: s),
    Case("reconciler: publish the booking event", "aws", "AWSEvents.PutEvents", lambda c, r, s: s),
    Case(
        "reconciler: settle the outbox",
        "aws",
        "UpdateItem",
        lambda c, r, s: f"(?=.*outbox)(?=.*{re.escape(r)})",
    ),
]


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("case", RECONCILER_CALLS, ids=[c.name for c in RECONCILER_CALLS])
def test_reconciler_fault(
    api: Api, fast: Any, stack: Stack, matrix_company: Company, case: Case, fault: str, persistent: bool
) -> None:
    """A pass that meets a fault repairs what it can and counts what it could not, never
    raising; the next pass, with the fault gone, repairs the rest: the payment recorded,
    its booking event published (once, or again under the same EventId when the first
    publication's answer was lost), nothing owed, nothing left due."""
    company = matrix_company
    reference = f"rc-fault-{uuid.uuid4().hex[:12]}"
    created = checkout(api, company, reference)
    assert created.status == 200, created.text
    session_id = created.json["SessionId"]
    stack.emulator.complete(session_id, deliver=False)  # paid at Stripe; no webhook ever arrives
    config = dataclasses.replace(
        Config.from_env(),
        reconcile_grace_minutes=0,
        secret_cache_seconds=0,
        settings_cache_seconds=0,
        stripe_timeout_seconds=TIMEOUT,
    )
    fired = inject(
        stack, case, fault, case.matching(company, reference, session_id), PERSISTENT if persistent else 1
    )

    report = build_reconciler(config).run(company_id=uuid.UUID(company.company_id))

    assert fired() >= 1, "the fault never hit its call"
    stack.aws.clear_faults()
    stack.emulator.clear_faults()
    paid_now = company.sessions(reference)["payment_state"] == "paid"
    assert report.failed >= 1 or paid_now, report

    if "timeout" in fault:
        time.sleep(LATE)
    again = build_reconciler(config).run(company_id=uuid.UUID(company.company_id))

    assert again.failed == 0, again
    record = company.sessions(reference)
    assert (record["payment_state"], record["paid_session_id"]) == ("paid", session_id)
    key = ReferenceKey(uuid.UUID(company.company_id), reference)
    registry = DynamoSessionRegistry(dynamodb_client(), config.sessions_table, config.lease_seconds)
    assert registry.owed_events(key) == []
    assert session_id not in [r.session_id for r in registry.due(None, key.company_id)]
    published = [
        e for e in stack.booking_events(company.company_id) if e["detail"]["SessionId"] == session_id
    ]
    assert [e["detail-type"] for e in published][:1] == ["Checkout Paid"]
    assert len({e["detail"]["EventId"] for e in published}) == 1, published
    assert_invariant(stack, company, reference)
