"""The reconciler against moto and the Stripe emulator: lost webhooks, killed functions,
double payments and refunds, undelivered events, and what a pass costs.

Each pass here is limited to the test's own company (as `checkout-admin reconcile
--company-id` does) and runs with no grace period, so what a test made is due at once.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

from checkout import aws_clients
from checkout.aws_clients import dynamodb_client, events_client, secretsmanager_client
from checkout.aws_json_client import DYNAMODB, AwsJsonClient
from checkout.booking_events import EventBridgePublisher, OutboxRelay
from checkout.company_store import DynamoCompanyDirectory
from checkout.composition import build_reconciler
from checkout.config import Config
from checkout.domain import Merchant, OpenSession, PendingAttempt, ReferenceKey
from checkout.reconciler import Reconciler, ReconcileReport
from checkout.secrets_store import SecretCache
from checkout.session_registry import DynamoSessionRegistry, SessionWrite
from checkout.stripe_gateway import StripeGateway
from checkout.stripe_keys import SecretsManagerKeys
from checkout.stripe_webhooks import WebhookEndpoints
from localdev.aws_stack import REGION, table_definitions
from tests.conftest import Api, Company, Stack, admin, assert_invariant, onboard
from tests.fakes import checkout_spec
from tests.integration.test_checkout_api import assert_error_body
from tests.integration.test_failures import EXPIRE, use_service
from tests.integration.test_stripe_webhooks import WEBHOOK, bridge, settle, webhook_module

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["bridge", "webhook_module"]  # fixtures this module uses from the webhook tests

SECRET = "whsec_reconcilerTestSecret0001"


@pytest.fixture
def reconciler(stack: Stack) -> Reconciler:
    return build_reconciler(dataclasses.replace(Config.from_env(), reconcile_grace_minutes=0))


@pytest.fixture(autouse=True)
def _no_leftover_faults(stack: Stack) -> Iterator[None]:
    yield
    stack.emulator.clear_faults()


def run(reconciler: Reconciler, company: Company) -> ReconcileReport:
    return reconciler.run(company_id=uuid.UUID(company.company_id))


def repairs(report: ReconcileReport) -> list[tuple[str, str | None]]:
    return [(r.what, r.session_id) for r in report.repairs]


def types_of(stack: Stack, company: Company) -> list[str]:
    return [e["detail-type"] for e in stack.booking_events(company.company_id)]


def due_records(company: Company) -> list[str | None]:
    registry = DynamoSessionRegistry(dynamodb_client(), Config.from_env().sessions_table, 60)
    return [r.session_id for r in registry.due(None, uuid.UUID(company.company_id))]


def two_open_sessions(api: Api, stack: Stack, company: Company, reference: str) -> tuple[str, str]:
    """The current session and a second one left open beside it, as after expiries that failed
    (each expiry with its two retries: the prior's, then the new session's compensation)."""
    first = api.post(company.request(reference)).json["SessionId"]
    stack.emulator.inject_fault("POST", EXPIRE, 503, count=6)
    assert_error_body(api.post(company.request(reference)), 502, "StripeError")
    stack.emulator.clear_faults()
    record = company.sessions(reference)
    [second] = [s for s in record["open_session_ids"] if s != first]
    assert record["current_session_id"] == first
    return first, second


# -- a lost webhook ---------------------------------------------------------------------------------


def test_a_payment_whose_webhook_never_arrived_is_recorded_and_published_once_by_one_pass(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler
) -> None:
    session_id = api.post(company.request("booking-rc-lost")).json["SessionId"]
    stack.emulator.complete(session_id, deliver=False)  # paid at Stripe; the service never hears

    report = run(reconciler, company)

    record = company.sessions("booking-rc-lost")
    assert (record["payment_state"], record["paid_session_id"]) == ("paid", session_id)
    assert ("recorded it paid", session_id) in repairs(report)
    assert types_of(stack, company) == ["Checkout Paid"]
    assert_error_body(api.post(company.request("booking-rc-lost")), 409, "AlreadyPaid")
    assert due_records(company) == []  # settled and published: out of the index

    again = run(reconciler, company)

    assert (again.repaired, again.failed) == (0, 0)
    assert types_of(stack, company) == ["Checkout Paid"]


def test_a_delayed_payment_that_failed_unheard_makes_the_reference_payable_again(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler
) -> None:
    session_id = api.post(company.request("booking-rc-sepa")).json["SessionId"]
    stack.emulator.complete(session_id, delayed=True, deliver=False)

    run(reconciler, company)

    assert company.sessions("booking-rc-sepa")["payment_state"] == "processing"
    assert_error_body(api.post(company.request("booking-rc-sepa")), 409, "PaymentProcessing")
    assert due_records(company) == [session_id]  # still settling: looked at again later

    stack.emulator.settle(session_id, succeeded=False, deliver=False)
    # Asked by name, as an operator would, rather than waiting for its next look.
    report = reconciler.reconcile_reference(ReferenceKey(uuid.UUID(company.company_id), "booking-rc-sepa"))

    assert ("recorded it failed", session_id) in repairs(report)
    assert company.sessions("booking-rc-sepa")["payment_state"] == "payable"
    assert types_of(stack, company) == ["Checkout Payment Failed"]
    assert api.post(company.request("booking-rc-sepa")).status == 200


def test_an_open_session_is_asked_about_again_later_not_every_pass(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler
) -> None:
    api.post(company.request("booking-rc-open"))

    first = run(reconciler, company)
    again = run(reconciler, company)

    assert (first.sessions_checked, first.repaired) == (1, 0)
    assert again.sessions_checked == 0


# -- a function killed between Stripe and the registry ------------------------------------------------


def test_a_session_a_killed_function_created_is_recorded_and_closed_by_the_next_pass(
    api: Api,
    stack: Stack,
    company: Company,
    reconciler: Reconciler,
    handler_module: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = "booking-rc-killed"
    api.post(company.request(reference))
    service = use_service(monkeypatch, handler_module, lease_seconds=1)

    class Killed(BaseException):
        """The Lambda killed: nothing after it runs, not even `finally` blocks' writes."""

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed()

    with monkeypatch.context() as while_killed:
        while_killed.setattr(service._registry, "_commit", killed)
        while_killed.setattr(service._registry, "_release", lambda *a: None)
        with pytest.raises(Killed):
            api.post(company.request(reference))
    [orphan] = [
        s["id"]
        for s in stack.emulator.sessions()
        if s["client_reference_id"] == reference and s["status"] == "open"
    ]
    assert orphan not in [s["session_id"] for s in company.sessions(reference)["sessions"]]
    time.sleep(1.1)  # the killed invocation's lease runs out

    report = run(reconciler, company)

    assert ("recorded a session a dead request created", orphan) in repairs(report)
    record = assert_invariant(stack, company, reference)  # every session recorded, none open but current
    assert record["pending_attempts"] == 0
    assert {s["session_id"]: s["status"] for s in record["sessions"]}[orphan] == "expired"
    assert run(reconciler, company).repaired == 0


def test_attempts_of_a_reference_a_live_checkout_holds_wait_for_the_next_pass(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler, handler_module: ModuleType
) -> None:
    key = ReferenceKey(uuid.UUID(company.company_id), "booking-rc-held")
    registry = handler_module.SERVICES.checkout.registry
    spec = checkout_spec(key.company_id, key.reference)
    with registry.reference(key, PendingAttempt.of(f"checkout-dead-{uuid.uuid4().hex}", spec, 0)):
        pass  # a request that stopped before calling Stripe: its attempt is pending
    with registry.reference(key, PendingAttempt.of(f"checkout-live-{uuid.uuid4().hex}", spec, 0)) as live:
        [head] = reconciler._registry.due(None, key.company_id)
        assert head.due_at_ms > time.time() * 1000  # not due while the lease lasts
        held = reconciler.reconcile_reference(key)  # asked by name: due or not, the lease decides
        live.release(keep_attempts=live.stale_attempts)

    assert (held.skipped, held.repaired) == (1, 0)
    assert company.sessions(key.reference)["pending_attempts"] == 1

    report = run(reconciler, company)

    assert company.sessions(key.reference)["pending_attempts"] == 0
    [recorded] = company.sessions(key.reference)["sessions"]
    assert recorded["status"] == "expired"  # made now by the replay, and closed: nobody has its URL
    assert ("recorded a session a dead request created", recorded["session_id"]) in repairs(report)


# -- sessions that should not be payable ----------------------------------------------------------------


def test_a_second_open_session_beside_the_current_one_is_expired(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler
) -> None:
    current, extra = two_open_sessions(api, stack, company, "booking-rc-two-open")

    report = run(reconciler, company)

    assert repairs(report) == [
        ("expired a session that should not be payable", extra),
        ("recorded it expired", extra),
    ]
    record = assert_invariant(stack, company, "booking-rc-two-open")
    assert record["open_session_ids"] == [current]
    assert types_of(stack, company) == []  # not the booking's current checkout: no news


# -- double payments -------------------------------------------------------------------------------------


def test_two_paid_sessions_are_detected_published_and_the_later_refunded_once(
    api: Api, stack: Stack, bridge: str, reconciler: Reconciler
) -> None:
    company = onboard(extra=("--refund-duplicate-payments",))
    admin("webhook", "create", "--company-id", company.company_id,
          "--url", f"{bridge}{WEBHOOK}/{company.company_id}")  # fmt: skip
    first, second = two_open_sessions(api, stack, company, "booking-rc-double")

    stack.emulator.complete(first)
    settle(stack)
    stack.emulator.complete(second)  # the other tab, a moment later
    settle(stack)

    record = company.sessions("booking-rc-double")
    assert (record["paid_session_id"], record["double_paid_session_ids"]) == (first, [second])
    published = stack.booking_events(company.company_id)
    assert [e["detail-type"] for e in published] == ["Checkout Paid", "Checkout Double Payment"]
    assert (published[1]["detail"]["SessionId"], published[1]["detail"]["PaidSessionId"]) == (second, first)
    paid_once, paid_twice = (e["detail"]["PaymentIntentId"] for e in published)

    def refunds_of(intent: str) -> list[dict[str, Any]]:
        return [r for r in stack.emulator.refunds() if r["payment_intent"] == intent]

    assert refunds_of(paid_twice) == []  # the webhook leaves the refund to the reconciler

    report = run(reconciler, company)
    again = run(reconciler, company)

    refunds = refunds_of(paid_twice)
    assert [(r["amount"], r["reason"], r["status"]) for r in refunds] == [(45000, "duplicate", "succeeded")]
    assert refunds_of(paid_once) == []  # never the payment that pays the reference
    assert ("refunded the double payment (45000 sek)", second) in repairs(report)
    assert again.repaired == 0
    refunded = stack.booking_events(company.company_id)[-1]
    assert refunded["detail-type"] == "Checkout Refunded"
    assert refunded["detail"]["RefundId"] == refunds[0]["id"]
    assert (refunded["detail"]["SessionId"], refunded["detail"]["PaidSessionId"]) == (second, first)
    assert [s["refund_id"] for s in company.sessions("booking-rc-double")["sessions"]] == [
        None,
        refunds[0]["id"],
    ]
    assert due_records(company) == []


def test_a_double_payment_is_detected_but_not_refunded_when_the_company_has_not_asked(
    api: Api, stack: Stack, company: Company, reconciler: Reconciler
) -> None:
    first, second = two_open_sessions(api, stack, company, "booking-rc-double-off")
    stack.emulator.complete(first, deliver=False)
    stack.emulator.complete(second, deliver=False)
    refunds_before = len(stack.emulator.refunds())

    report = run(reconciler, company)
    again = run(reconciler, company)

    # Published in one batch, whose order EventBridge does not keep.
    assert sorted(types_of(stack, company)) == ["Checkout Double Payment", "Checkout Paid"]
    assert company.sessions("booking-rc-double-off")["double_paid_session_ids"] == [second]
    assert ("recorded it paid", second) in repairs(report)
    assert len(stack.emulator.refunds()) == refunds_before
    assert again.repaired == 0
    assert due_records(company) == []


def test_a_double_payment_on_a_connected_account_is_refunded_there(
    api: Api, stack: Stack, reconciler: Reconciler
) -> None:
    account = "acct_1ReconcilerConnect"
    company = onboard(stripe_account=account, extra=("--refund-duplicate-payments",))
    first, second = two_open_sessions(api, stack, company, "booking-rc-double-connect")
    stack.emulator.complete(first, account, deliver=False)
    stack.emulator.complete(second, account, deliver=False)

    run(reconciler, company)

    intents = {s["id"]: s["payment_intent"] for s in stack.emulator.sessions(account)}
    refunded = [r["payment_intent"] for r in stack.emulator.refunds(account)]
    assert intents[second] in refunded and intents[first] not in refunded
    assert [r for r in stack.emulator.refunds() if r["payment_intent"] == intents[second]] == []
    assert sorted(types_of(stack, company)) == [
        "Checkout Double Payment",
        "Checkout Paid",
        "Checkout Refunded",
    ]


# -- undelivered webhook events ---------------------------------------------------------------------------


def test_undelivered_events_are_applied_for_a_company_with_an_endpoint_before_the_session_is_due(
    api: Api, stack: Stack
) -> None:
    company = onboard()
    admin("webhook", "put-secret", "--company-id", company.company_id, stdin=SECRET)
    session_id = api.post(company.request("booking-rc-undelivered")).json["SessionId"]
    stack.emulator.complete(session_id, deliver=False)  # Stripe could not deliver it
    # An hour's grace: nothing is due yet, so only the sweep of events can repair it.
    patient = build_reconciler(dataclasses.replace(Config.from_env(), reconcile_grace_minutes=60))

    report = run(patient, company)

    assert report.webhook_events_undelivered >= 1  # the emulator's platform account is every test's
    assert repairs(report) == [("applied the undelivered checkout.session.completed", session_id)]
    assert company.sessions("booking-rc-undelivered")["payment_state"] == "paid"
    assert types_of(stack, company) == ["Checkout Paid"]
    assert run(patient, company).repaired == 0  # still undelivered at Stripe, already known here


# -- what a pass costs ------------------------------------------------------------------------------------


@pytest.fixture
def scale_table(stack: Stack) -> Iterator[str]:
    name = f"test-reconcile-scale-{uuid.uuid4().hex[:6]}"
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=stack.aws.url)
    client.create_table(TableName=name, **table_definitions()["SESSIONS_TABLE_NAME"])
    yield name
    client.delete_table(TableName=name)


def _settled_references(table: str, company_id: uuid.UUID, count: int) -> None:
    """Paid references as the registry leaves them once everything is published."""
    client = boto3.client("dynamodb", region_name=REGION)
    items: list[dict[str, Any]] = []
    for n in range(count):
        pk = f"REFERENCE#{company_id}#settled-{n}"
        session_id = f"cs_test_settled{n}"
        items += [
            {"pk": {"S": pk}, "sk": {"S": "HEAD"}, "company_id": {"S": str(company_id)},
             "reference": {"S": f"settled-{n}"}, "current_session_id": {"S": session_id},
             "payment_state": {"S": "paid"}, "paid_session_id": {"S": session_id},
             "attempts": {"L": []}, "open_sessions": {"M": {}}, "outbox": {"M": {}}, "version": {"N": "4"}},
            {"pk": {"S": pk}, "sk": {"S": f"SESSION#{session_id}"}, "session_id": {"S": session_id},
             "company_id": {"S": str(company_id)}, "reference": {"S": f"settled-{n}"},
             "status": {"S": "complete"}, "state": {"S": "paid"}, "payment_status": {"S": "paid"},
             "amount_total": {"N": "45000"}, "currency": {"S": "sek"}, "created_at_ms": {"N": "1"}},
        ]  # fmt: skip
    for start in range(0, len(items), 25):
        client.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )


def test_a_pass_over_10000_settled_references_costs_what_its_3_open_ones_cost(
    stack: Stack, company: Company, scale_table: str
) -> None:
    config = dataclasses.replace(Config.from_env(), sessions_table=scale_table, reconcile_grace_minutes=0)
    company_id = uuid.UUID(company.company_id)
    _settled_references(scale_table, company_id, 10_000)
    calls: Counter[str] = Counter()

    class CountingClient(AwsJsonClient):
        def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
            calls.update([operation])
            return super().call(operation, params)

    client = cast("DynamoDBClient", CountingClient(DYNAMODB, aws_clients.SETTINGS))
    registry = DynamoSessionRegistry(client, scale_table, config.lease_seconds)
    secrets = SecretCache(secretsmanager_client(), 300, ThreadPoolExecutor(max_workers=2))
    keys = SecretsManagerKeys(secrets, stage=config.stage, name_prefix=config.secret_name_prefix)
    gateway = StripeGateway(config, keys)
    reconciler = Reconciler(
        DynamoCompanyDirectory(client, config.companies_table, 60),
        gateway,
        registry,
        OutboxRelay(registry, EventBridgePublisher(events_client, config.event_bus_name)),
        WebhookEndpoints(secrets, config.secret_name_prefix),
        grace_minutes=0,
    )
    spec = checkout_spec(company_id, "open-0")
    opened = []
    for n in range(3):
        key = ReferenceKey(company_id, f"open-{n}")
        attempt = PendingAttempt.of(
            f"scale-{uuid.uuid4().hex}", dataclasses.replace(spec, reference=key.reference), 0
        )
        session = gateway.create_session(
            Merchant(f"{config.secret_name_prefix}{company_id}"), attempt.spec(), attempt.idempotency_key
        )
        with registry.reference(key, attempt) as ref:
            ref.commit([SessionWrite(session, None, "hosted", created=True)], current_session_id=session.id,
                       open_sessions=[OpenSession(session.id, None)])  # fmt: skip
        opened.append(session.id)
    stack.emulator.complete(opened[0], deliver=False)
    calls.clear()

    report = reconciler.run()

    assert report.sessions_checked == 3
    assert report.failed == 0
    # The payment is what the pass repaired (which step of it recorded the payment is the
    # other tests' subject; this one counts calls).
    assert report.repaired >= 1
    assert "Scan" not in calls
    # Per pass: one Query per shard for what is due and one for the events sweep; per open
    # reference: read it, apply Stripe's answer, look again or publish and leave the index.
    assert sum(calls.values()) <= 8 + 3 * 8, calls
    print(f"DynamoDB calls for 10,000 settled and 3 open references: {sum(calls.values())} {dict(calls)}")
    assert registry.load(ReferenceKey(company_id, "open-0")).payment.paid_session_id == opened[0]
