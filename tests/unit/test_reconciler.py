"""The reconciler's pass against in-memory fakes: its time budget, failures, and refunds.

The registry fake passes the same contract suite as the DynamoDB registry, due index
included; `tests/integration/test_reconciler.py` runs the pass against moto and the
Stripe emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest

from checkout.booking_events import OutboxRelay
from checkout.contract import StripeV1CreateCheckout
from checkout.domain import (
    Article,
    ArticleKey,
    CompanySettings,
    LineItem,
    PendingAttempt,
    ReferenceKey,
)
from checkout.errors import UpstreamFailure
from checkout.reconciler import Reconciler, ReconcileReport
from checkout.service import CheckoutService
from checkout.session_registry import SessionWrite
from tests.fakes import (
    Clock,
    FakeDirectory,
    FakePublisher,
    FakeStripe,
    InMemorySessionRegistry,
    checkout_spec,
)

COMPANY = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
KEY = "key-of-the-company"
SETTINGS = CompanySettings(
    company_id=COMPANY,
    checkout_enabled=True,
    stripe_secret_name="checkout/stripe/x",
    allowed_url_prefixes=("https://shop.example/",),
    default_confirmation_url="https://shop.example/done",
    refund_duplicate_payments=True,
    api_key_ids=frozenset({KEY}),
)
ARTICLE = Article(ArticleKey(1, 42), "Haircut", 45000, "sek")
SPEC = checkout_spec(
    COMPANY,
    "ref-1",
    line_item=LineItem("Haircut", 45000, "sek", 1),
    confirmation_url="https://shop.example/done",
)


@dataclass
class Endpoints:
    scopes: set[str]

    def registered(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass
class World:
    directory: FakeDirectory
    stripe: FakeStripe
    registry: InMemorySessionRegistry
    publisher: FakePublisher
    checkout: CheckoutService
    reconciler: Reconciler
    endpoints: Endpoints
    clock: Clock

    def create(self, reference: str) -> str:
        body = {
            "CompanyId": str(COMPANY),
            "CountryCode": "SE",
            "Articles": [{"ArticleId": 42, "ArticleTypeId": 1}],
            "InternalReferenceId": reference,
        }
        request = StripeV1CreateCheckout.model_validate(body)
        return self.checkout.create_checkout(request, api_key_id=KEY).session.id

    def key(self, reference: str) -> ReferenceKey:
        return ReferenceKey(COMPANY, reference)


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()
    directory = FakeDirectory(SETTINGS, {ARTICLE.key: ARTICLE})
    stripe, registry, publisher = FakeStripe(), InMemorySessionRegistry(90, clock), FakePublisher()
    relay = OutboxRelay(registry, publisher)
    endpoints = Endpoints(set())
    with ThreadPoolExecutor(max_workers=4) as executor:
        checkout = CheckoutService(
            directory, stripe, registry, relay, executor, secret_name_prefix="checkout/stripe/", clock=clock
        )
        reconciler = Reconciler(directory, stripe, registry, relay, endpoints, grace_minutes=5, clock=clock)
        yield World(directory, stripe, registry, publisher, checkout, reconciler, endpoints, clock)


def later(world: World, minutes: float = 10) -> None:
    world.clock.now += minutes * 60


def repairs(report: ReconcileReport) -> list[tuple[str, str, str | None]]:
    return [(r.reference, r.what, r.session_id) for r in report.repairs]


def test_nothing_is_due_within_the_grace_period(world: World) -> None:
    session_id = world.create("ref-1")
    world.stripe.pay(session_id)

    early = world.reconciler.run()
    later(world)
    report = world.reconciler.run()

    assert early.references_checked == 0
    assert repairs(report) == [
        ("ref-1", "recorded it paid", session_id),
        ("ref-1", "published 1 booking event(s)", None),
    ]
    assert world.publisher.types() == ["Checkout Paid"]


def test_a_pass_stops_before_its_time_runs_out_and_the_next_pass_goes_on(world: World) -> None:
    paid = [world.create(f"ref-{n}") for n in range(3)]
    for session_id in paid:
        world.stripe.pay(session_id)
    later(world)
    budget = iter([100.0, 100.0])  # seconds left at each check: enough for one reference

    first = world.reconciler.run(seconds_left=lambda: next(budget, 29.0))
    second = world.reconciler.run()

    assert first.more_remains and first.references_checked == 1
    assert not second.more_remains and second.references_checked == 2
    assert world.publisher.types() == ["Checkout Paid"] * 3
    assert world.reconciler.run().repaired == 0


def test_a_failing_reference_is_counted_and_the_pass_goes_on_behind_it(world: World) -> None:
    broken, fine = world.create("ref-broken"), world.create("ref-fine")
    world.stripe.pay(fine)
    world.stripe.fail_retrieve[broken] = UpstreamFailure("StripeError", "Stripe failed.")
    later(world)

    report = world.reconciler.run()

    assert (report.failed, report.references_checked) == (1, 2)
    assert ("ref-fine", "recorded it paid", fine) in repairs(report)
    [due] = world.registry.due()
    assert (due.session_id, due.due_at_ms) == (broken, int(world.clock.now * 1000))  # behind the queue
    later(world)
    assert world.reconciler.run().failed == 1  # tried again each pass: the alarm sees it repeat


def test_a_company_whose_settings_are_gone_fails_its_references(world: World) -> None:
    world.create("ref-1")
    world.directory.settings = None
    later(world)

    report = world.reconciler.run()

    assert (report.failed, report.repaired) == (1, 0)


def _double_paid(world: World, reference: str = "ref-double") -> tuple[str, str]:
    """A reference whose current session and a second one left open beside it both got paid."""
    first = world.create(reference)
    world.stripe.fail_expire[:] = [UpstreamFailure("StripeError", "Stripe failed.")] * 2
    with pytest.raises(UpstreamFailure):
        world.create(reference)
    [second] = [
        s.session_id for s in world.registry.load(world.key(reference)).open_sessions if s.session_id != first
    ]
    world.stripe.pay(first)
    world.stripe.pay(second)
    later(world)
    return first, second


def test_a_double_payment_is_refunded_once_never_the_payment_that_stands(world: World) -> None:
    _, second = _double_paid(world)

    report = world.reconciler.run()
    later(world)
    again = world.reconciler.run()

    assert world.stripe.refunds == [(f"pi_{second}", f"refund-{second}", None)]
    assert ("ref-double", "refunded the double payment (45000 sek)", second) in repairs(report)
    # (EventBridge does not keep the order of one batch; consumers go by PaidSessionId.)
    assert sorted(world.publisher.types()) == [
        "Checkout Double Payment",
        "Checkout Paid",
        "Checkout Refunded",
    ]
    assert again.repaired == 0
    assert list(world.registry.due()) == []


def test_a_refund_whose_recording_failed_is_recorded_next_pass_not_made_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, second = _double_paid(world)
    original = world.registry.record_refund
    failing = iter([UpstreamFailure("AwsUnavailable", "DynamoDB is unavailable.")])

    def record_refund(*args: Any) -> bool:
        for failure in failing:
            raise failure
        return original(*args)

    monkeypatch.setattr(world.registry, "record_refund", record_refund)

    assert world.reconciler.run().failed == 1
    later(world)
    world.reconciler.run()

    assert [pi for pi, _, _ in world.stripe.refunds] == [f"pi_{second}"]
    assert world.registry.load(world.key("ref-double")).sessions[1].refund_id == f"re_pi_{second}"
    assert world.publisher.types().count("Checkout Refunded") == 1


def test_without_the_companys_consent_a_double_payment_is_published_and_not_refunded(world: World) -> None:
    world.directory.settings = replace(SETTINGS, refund_duplicate_payments=False)
    _double_paid(world)

    world.reconciler.run()

    assert world.stripe.refunds == []
    assert sorted(world.publisher.types()) == ["Checkout Double Payment", "Checkout Paid"]
    assert list(world.registry.due()) == []  # nothing left to do about it


def test_undelivered_events_only_for_companies_with_an_endpoint_and_unsettled_sessions(world: World) -> None:
    session_id = world.create("ref-1")
    paid = world.stripe.pay(session_id)
    world.stripe.undelivered = [
        {
            "id": "evt_1",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": paid.id,
                    "object": "checkout.session",
                    "status": "complete",
                    "payment_status": "paid",
                }
            },
        },
        {"id": "evt_0", "type": "checkout.session.completed", "data": {"object": {"id": "cs_not_ours"}}},
    ]

    unregistered = world.reconciler.run()  # within the grace period: only the sweep could act
    world.endpoints.scopes.add(str(COMPANY))
    report = world.reconciler.run()

    assert (unregistered.webhook_events_undelivered, unregistered.repaired) == (0, 0)
    assert report.webhook_events_undelivered == 2
    assert repairs(report) == [("ref-1", "applied the undelivered checkout.session.completed", session_id)]
    assert world.publisher.types() == ["Checkout Paid"]
    assert world.reconciler.run().repaired == 0


def test_asked_by_name_a_reference_is_repaired_at_once(world: World) -> None:
    session_id = world.create("ref-1")
    world.stripe.pay(session_id, "unpaid", failed=True)

    report = world.reconciler.reconcile_reference(world.key("ref-1"))

    assert ("ref-1", "recorded it failed", session_id) in repairs(report)
    assert world.publisher.types() == ["Checkout Payment Failed"]


def test_an_attempt_whose_session_was_recorded_without_the_lease_keeps_that_record(world: World) -> None:
    key = world.key("ref-1")
    attempt = PendingAttempt.of("checkout-lost-lease", SPEC, 0)
    with world.registry.reference(key, attempt) as ref:  # a request that lost its lease meanwhile
        made = world.stripe.create_session(SETTINGS.merchant, SPEC, attempt.idempotency_key)
        ref.record_unleased(
            SessionWrite(world.stripe.expire_session(SETTINGS.merchant, made.id), None, "kept", created=True)
        )
    later(world)

    report = world.reconciler.run()

    state = world.registry.load(key)
    assert state.pending_attempts == ()
    assert [(s.session_id, s.ui_mode) for s in state.sessions] == [(made.id, "kept")]
    assert ("ref-1", "finished an attempt whose session was recorded", made.id) in repairs(report)
