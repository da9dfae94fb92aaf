"""The checkout use case against in-memory fakes of its ports: no AWS, no HTTP.

The registry fake passes the same contract suite as the DynamoDB registry
(`tests/contract`), so what these tests show holds for the real adapters too.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest

from checkout.access import AccessPolicy
from checkout.booking_events import OutboxRelay
from checkout.contract import StripeV1CreateCheckout
from checkout.domain import (
    Article,
    ArticleKey,
    CompanySettings,
    OpenSession,
    PaymentState,
    PendingAttempt,
    ReferenceKey,
    ReferenceState,
    SessionState,
)
from checkout.errors import (
    AccessDenied,
    AlreadyPaid,
    CheckoutInProgress,
    CheckoutNotConfigured,
    InvalidRequest,
    PaymentProcessing,
    StripeCredentialsUnusable,
    StripeRejected,
    TooManyCheckouts,
    UpstreamFailure,
)
from checkout.service import CheckoutService
from tests.fakes import Clock, FakeDirectory, FakePublisher, FakeStripe, InMemorySessionRegistry

COMPANY = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
SETTINGS = CompanySettings(
    company_id=COMPANY,
    checkout_enabled=True,
    stripe_secret_name="checkout/stripe/x",
    allowed_url_prefixes=("https://shop.example/",),
    default_confirmation_url="https://shop.example/done",
    api_key_ids=frozenset({"key-of-the-company"}),
)
KEY = "key-of-the-company"
ARTICLE = Article(ArticleKey(1, 42), "Haircut", 45000, "sek")


@dataclass
class World:
    directory: FakeDirectory
    stripe: FakeStripe
    registry: InMemorySessionRegistry
    service: CheckoutService
    clock: Clock
    publisher: FakePublisher

    def state(self, reference: str = "ref-1") -> ReferenceState:
        return self.registry.load(ReferenceKey(COMPANY, reference))


@pytest.fixture
def world() -> World:
    clock = Clock()
    directory = FakeDirectory(SETTINGS, {ARTICLE.key: ARTICLE})
    stripe, registry, publisher = FakeStripe(), InMemorySessionRegistry(90, clock), FakePublisher()
    service = CheckoutService(
        directory,
        stripe,
        registry,
        OutboxRelay(registry, publisher),
        ThreadPoolExecutor(max_workers=4),
        secret_name_prefix="checkout/stripe/",
        sessions_per_minute=10,
        clock=clock,
    )
    return World(directory, stripe, registry, service, clock, publisher)


def request(reference: str = "ref-1", **overrides: Any) -> StripeV1CreateCheckout:
    body: dict[str, Any] = {
        "CompanyId": str(COMPANY),
        "CountryCode": "SE",
        "Articles": [{"ArticleId": 42, "ArticleTypeId": 1}],
        "InternalReferenceId": reference,
        **overrides,
    }
    return StripeV1CreateCheckout.model_validate(body)


def test_creates_records_and_makes_current(world: World) -> None:
    result = world.service.create_checkout(request(), api_key_id=KEY)

    state = world.state()
    assert state.current_session_id == result.session.id
    assert state.open_sessions == (OpenSession(result.session.id, None),)
    assert [s.ui_mode for s in state.sessions] == ["hosted"]
    assert state.pending_attempts == ()
    assert world.stripe.calls == ["create"]


def test_a_second_checkout_expires_the_first_and_becomes_current(world: World) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id

    second = world.service.create_checkout(request(), api_key_id=KEY).session.id

    assert world.stripe.open_ids() == [second]
    state = world.state()
    assert state.current_session_id == second
    assert {s.session_id: s.state for s in state.sessions} == {
        first: SessionState.EXPIRED,
        second: SessionState.OPEN,
    }
    assert sorted(world.stripe.calls[1:]) == ["create", f"expire {first}"]


def test_a_prior_paid_meanwhile_is_409_the_new_session_is_expired_and_the_reference_paid(
    world: World,
) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id
    world.stripe.pay(first)

    with pytest.raises(AlreadyPaid):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.stripe.open_ids() == []
    state = world.state()
    assert state.payment.state is PaymentState.PAID
    assert state.payment.paid_session_id == first
    assert state.current_session_id == first
    assert [s.state for s in state.sessions] == [SessionState.PAID, SessionState.EXPIRED]
    assert state.owed_events == ()  # recorded as owed, then published
    assert world.publisher.types() == ["Checkout Paid"]
    assert world.publisher.published[0].detail["SessionId"] == first
    calls = len(world.stripe.calls)
    with pytest.raises(AlreadyPaid):
        world.service.create_checkout(request(), api_key_id=KEY)
    assert len(world.stripe.calls) == calls  # known paid: Stripe is not asked again


def test_a_prior_settling_meanwhile_is_409_payment_processing(world: World) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id
    world.stripe.pay(first, payment_status="unpaid")  # a bank debit, settling

    with pytest.raises(PaymentProcessing):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.stripe.open_ids() == []
    assert world.state().payment.state is PaymentState.PROCESSING
    with pytest.raises(PaymentProcessing):
        world.service.create_checkout(request(), api_key_id=KEY)


def test_a_prior_that_cannot_be_expired_keeps_being_current_and_the_new_one_is_closed(world: World) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id
    world.stripe.fail_expire.append(UpstreamFailure("StripeError", "Stripe failed."))

    with pytest.raises(UpstreamFailure):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.stripe.open_ids() == [first]
    state = world.state()
    assert state.current_session_id == first
    assert state.open_sessions == (OpenSession(first, None),)
    assert [s.state for s in state.sessions] == [SessionState.OPEN, SessionState.EXPIRED]


def test_an_attempt_left_by_a_dead_request_is_replayed_recorded_and_expired(world: World) -> None:
    key = ReferenceKey(COMPANY, "ref-1")
    spec = world.service._spec(request(), SETTINGS, [ARTICLE.key], {ARTICLE.key: ARTICLE})
    dead = PendingAttempt.of("checkout-dead", spec, 5)
    orphan = world.stripe.create_session(SETTINGS.merchant, spec, dead.idempotency_key)  # Stripe made it
    with world.registry.reference(key, dead):
        pass  # the request died here: never recorded

    result = world.service.create_checkout(request(), api_key_id=KEY)

    assert world.stripe.open_ids() == [result.session.id]
    state = world.state()
    assert [(s.session_id, s.state) for s in state.sessions] == [
        (orphan.id, SessionState.EXPIRED),
        (result.session.id, SessionState.OPEN),
    ]
    assert state.pending_attempts == ()


def test_an_unreadable_attempt_is_dropped_and_never_blocks_the_reference(world: World) -> None:
    key = ReferenceKey(COMPANY, "ref-1")
    with world.registry.reference(key, PendingAttempt("checkout-poison", "{not json", 5)):
        pass

    result = world.service.create_checkout(request(), api_key_id=KEY)

    assert world.state().pending_attempts == ()
    assert world.stripe.open_ids() == [result.session.id]


def test_a_definite_stripe_refusal_leaves_no_pending_attempt(world: World) -> None:
    world.stripe.fail_create.append(StripeRejected("StripeRejected", "Stripe rejected the checkout."))

    with pytest.raises(StripeRejected):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.state().pending_attempts == ()
    assert not world.state().lease_held


def test_an_uncertain_stripe_failure_keeps_the_pending_attempt(world: World) -> None:
    world.stripe.fail_create.append(UpstreamFailure("StripeTimeout", "Stripe did not answer."))

    with pytest.raises(UpstreamFailure):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert len(world.state().pending_attempts) == 1
    assert not world.state().lease_held


def test_a_key_refused_even_after_a_fresh_fetch_is_a_credentials_failure(world: World) -> None:
    world.stripe.valid_keys.clear()

    with pytest.raises(StripeCredentialsUnusable):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.state().pending_attempts == ()


def test_a_reference_held_by_another_request_is_409_in_progress(world: World) -> None:
    key = ReferenceKey(COMPANY, "ref-1")
    spec = world.service._spec(request(), SETTINGS, [ARTICLE.key], {ARTICLE.key: ARTICLE})
    with world.registry.reference(key, PendingAttempt.of("other", spec, 1)) as other:
        with pytest.raises(CheckoutInProgress):
            world.service.create_checkout(request(), api_key_id=KEY)
        other.release(keep_attempts=())
    assert world.stripe.calls == []


def test_a_lease_lost_before_commit_closes_and_records_the_new_session(world: World) -> None:
    def overtaken() -> None:
        world.clock.now += 91  # our lease runs out while Stripe answers
        with world.registry.reference(ReferenceKey(COMPANY, "ref-1"), PendingAttempt("x", "{}", 1)) as thief:
            thief.committed = True  # it keeps the lease: "another request holds it now"

    world.stripe.on_create = overtaken

    with pytest.raises(CheckoutInProgress):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.stripe.open_ids() == []
    assert [s.state for s in world.state().sessions] == [SessionState.EXPIRED]


def test_a_reference_asking_for_too_many_sessions_a_minute_is_429_with_retry_after(world: World) -> None:
    for _ in range(10):
        world.service.create_checkout(request(), api_key_id=KEY)
        world.clock.now += 1
    calls = len(world.stripe.calls)

    with pytest.raises(TooManyCheckouts) as caught:
        world.service.create_checkout(request(), api_key_id=KEY)

    assert caught.value.retry_after == 50
    assert len(world.stripe.calls) == calls
    assert world.state().pending_attempts == ()
    world.clock.now += 50
    world.service.create_checkout(request(), api_key_id=KEY)


def test_a_disabled_company_is_not_configured_for_its_own_key(world: World) -> None:
    world.directory.settings = replace(SETTINGS, checkout_enabled=False)

    with pytest.raises(CheckoutNotConfigured):
        world.service.create_checkout(request(), api_key_id=KEY)


def test_a_key_bound_to_another_company_is_refused_before_stripe_and_the_registry(world: World) -> None:
    before = world.state()

    with pytest.raises(AccessDenied):
        world.service.create_checkout(request(), api_key_id="key-of-another-company")

    assert world.stripe.calls == [] and world.stripe.sessions == {}
    assert world.stripe.prefetched == []  # not even the company's Stripe key was read
    assert world.state() == before


def test_an_unknown_company_gets_the_same_refusal_as_a_foreign_one(world: World) -> None:
    with pytest.raises(AccessDenied) as foreign:
        world.service.create_checkout(request(), api_key_id="key-of-another-company")
    world.directory.settings = None
    with pytest.raises(AccessDenied) as unknown:
        world.service.create_checkout(request(), api_key_id=KEY)

    assert unknown.value.message == foreign.value.message


def test_a_request_without_a_key_id_is_refused_unless_unbound_requests_are_allowed(world: World) -> None:
    with pytest.raises(AccessDenied):
        world.service.create_checkout(request(), api_key_id=None)

    local = CheckoutService(
        world.directory, world.stripe, world.registry, OutboxRelay(world.registry, world.publisher),
        ThreadPoolExecutor(max_workers=4), secret_name_prefix="checkout/stripe/", clock=world.clock,
        access=AccessPolicy(allow_unbound=True),
    )  # fmt: skip
    assert local.create_checkout(request(), api_key_id=None).session.state is SessionState.OPEN
    world.directory.settings = None
    with pytest.raises(CheckoutNotConfigured):
        local.create_checkout(request("ref-2"), api_key_id=None)


def test_embedded_mode_uses_return_url_and_rejects_cancel_url(world: World) -> None:
    with pytest.raises(InvalidRequest) as caught:
        world.service.create_checkout(
            request(UiMode="embedded", CancelUrl="https://shop.example/c"), api_key_id=KEY
        )
    assert [e.field_name for e in caught.value.errors] == ["CancelUrl"]

    result = world.service.create_checkout(request(UiMode="embedded"), api_key_id=KEY)

    params = world.stripe.params[result.session.id]
    assert result.session.url is None
    assert params["ui_mode"] == "embedded_page"
    assert params["return_url"] == "https://shop.example/done"
    assert "success_url" not in params and "cancel_url" not in params
    assert [s.ui_mode for s in world.state().sessions] == ["embedded"]


def test_zero_total_is_refused_before_stripe(world: World) -> None:
    world.directory.articles[ARTICLE.key] = replace(ARTICLE, unit_amount=0)

    with pytest.raises(InvalidRequest) as caught:
        world.service.create_checkout(request(), api_key_id=KEY)

    assert caught.value.errors[0].field_name == "Articles"
    assert world.stripe.sessions == {}


def test_an_unknown_article_is_a_field_error(world: World) -> None:
    body = request(Articles=[{"ArticleId": 42, "ArticleTypeId": 1}, {"ArticleId": 9, "ArticleTypeId": 1}])
    with pytest.raises(InvalidRequest) as caught:
        world.service.create_checkout(body, api_key_id=KEY)
    assert [e.field_name for e in caught.value.errors] == ["Articles[1].ArticleId"]
