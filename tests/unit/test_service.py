"""The checkout use case against in-memory fakes of its ports: no AWS, no HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from checkout.access import AccessPolicy
from checkout.contract import StripeV1CreateCheckout
from checkout.domain import (
    Article,
    ArticleKey,
    CheckoutSession,
    CompanySettings,
    PendingAttempt,
    ReferenceKey,
    ReferenceState,
    SessionRecord,
    SessionStatus,
)
from checkout.errors import (
    AccessDenied,
    AlreadyPaid,
    CheckoutInProgress,
    CheckoutNotConfigured,
    InvalidRequest,
    LeaseLost,
    StripeAuthRejected,
    StripeCredentialsUnusable,
    StripeRejected,
    UpstreamFailure,
)
from checkout.service import CheckoutService
from checkout.stripe_gateway import session_params

COMPANY = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
SETTINGS = CompanySettings(
    company_id=COMPANY,
    checkout_enabled=True,
    stripe_secret_name="checkout/dev/stripe/x",
    allowed_url_prefixes=("https://shop.example/",),
    default_confirmation_url="https://shop.example/done",
    api_key_ids=frozenset({"key-of-the-company"}),
)
KEY = "key-of-the-company"


class FakeDirectory:
    def __init__(self, settings: CompanySettings | None = SETTINGS) -> None:
        self.settings = settings
        key = ArticleKey(1, 42)
        self.catalogue = {key: Article(key, "Haircut", 45000, "sek")}

    def company_settings(self, company_id: uuid.UUID) -> CompanySettings | None:
        return self.settings

    def articles(self, company_id: uuid.UUID, keys: Iterable[ArticleKey]) -> dict[ArticleKey, Article]:
        return {k: self.catalogue[k] for k in keys if k in self.catalogue}


class FakeKeys:
    def __init__(self) -> None:
        self.key = "sk_test_current"
        self.fetches: list[bool] = []

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        self.fetches.append(refresh)
        return self.key


@dataclass
class FakeStripe:
    """Sessions by id; idempotent creates; optional scripted failures."""

    sessions: dict[str, CheckoutSession] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    valid_keys: set[str] = field(default_factory=lambda: {"sk_test_current"})
    fail_create: list[Exception] = field(default_factory=list)
    fail_expire: list[Exception] = field(default_factory=list)
    expire_threads: set[str] = field(default_factory=set)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _auth(self, api_key: str) -> None:
        if api_key not in self.valid_keys:
            raise StripeAuthRejected()

    def create_session(
        self, api_key: str, stripe_account: str | None, params_json: str, idempotency_key: str
    ) -> CheckoutSession:
        self._auth(api_key)
        if self.fail_create:
            raise self.fail_create.pop(0)
        if idempotency_key in self.by_key:
            return self.sessions[self.by_key[idempotency_key]]
        params = json.loads(params_json)
        session = CheckoutSession(
            id=f"cs_{len(self.sessions)}",
            status=SessionStatus.OPEN,
            url="https://checkout/" if params["ui_mode"] == "hosted_page" else None,
        )
        self.sessions[session.id] = session
        self.params[session.id] = params
        self.by_key[idempotency_key] = session.id
        return session

    def retrieve_session(self, api_key: str, stripe_account: str | None, session_id: str) -> CheckoutSession:
        self._auth(api_key)
        return self.sessions[session_id]

    def expire_session(self, api_key: str, stripe_account: str | None, session_id: str) -> CheckoutSession:
        self._auth(api_key)
        self.expire_threads.add(threading.current_thread().name)
        if self.fail_expire:
            raise self.fail_expire.pop(0)
        session = self.sessions[session_id]
        if session.status is SessionStatus.OPEN:
            session = replace(session, status=SessionStatus.EXPIRED)
            self.sessions[session_id] = session
        return session

    def open_ids(self) -> list[str]:
        return [s.id for s in self.sessions.values() if s.status is SessionStatus.OPEN]


@dataclass
class FakeRegistry:
    """The registry's semantics (lease, attempt, records) in a dict."""

    lease: dict[ReferenceKey, str] = field(default_factory=dict)
    states: dict[ReferenceKey, ReferenceState] = field(default_factory=dict)
    lose_lease_on_record: bool = False

    def _state(self, key: ReferenceKey) -> ReferenceState:
        return self.states.get(key, ReferenceState(key))

    def acquire(self, key: ReferenceKey, owner: str) -> ReferenceState:
        if key in self.lease:
            raise CheckoutInProgress()
        self.lease[key] = owner
        return self._state(key)

    def release(self, key: ReferenceKey, owner: str) -> None:
        if self.lease.get(key) == owner:
            del self.lease[key]

    def _check(self, key: ReferenceKey, owner: str) -> None:
        if self.lease.get(key) != owner:
            raise LeaseLost()

    def save_attempt(self, key: ReferenceKey, owner: str, attempt: PendingAttempt) -> None:
        self._check(key, owner)
        self.states[key] = replace(self._state(key), pending_attempt=attempt)

    def clear_attempt(self, key: ReferenceKey, owner: str) -> None:
        self._check(key, owner)
        self.states[key] = replace(self._state(key), pending_attempt=None)

    def record_session(
        self, key: ReferenceKey, owner: str, session: CheckoutSession, stripe_account: str | None, ui_mode: str,
        *, make_current: bool,
    ) -> None:  # fmt: skip
        if self.lose_lease_on_record:
            self.lease[key] = "someone-else"
        self._check(key, owner)
        state = self._state(key)
        record = SessionRecord(session.id, session.status, stripe_account, len(state.sessions))
        self.states[key] = replace(
            state,
            pending_attempt=None,
            sessions=(*state.sessions, record),
            current_session_id=session.id if make_current else state.current_session_id,
        )

    def record_orphan(
        self, key: ReferenceKey, session: CheckoutSession, stripe_account: str | None, ui_mode: str
    ) -> None:
        state = self._state(key)
        record = SessionRecord(session.id, session.status, stripe_account, len(state.sessions))
        self.states[key] = replace(state, sessions=(*state.sessions, record))

    def update_status(self, key: ReferenceKey, session: CheckoutSession) -> None:
        state = self._state(key)
        sessions = tuple(
            replace(s, status=session.status) if s.session_id == session.id else s for s in state.sessions
        )
        completed = session.id if session.status is SessionStatus.COMPLETE else state.completed_session_id
        self.states[key] = replace(state, sessions=sessions, completed_session_id=completed)


@dataclass
class World:
    directory: FakeDirectory
    keys: FakeKeys
    stripe: FakeStripe
    registry: FakeRegistry
    service: CheckoutService

    def state(self, reference: str = "ref-1") -> ReferenceState:
        return self.registry._state(ReferenceKey(COMPANY, reference))


@pytest.fixture
def world() -> World:
    directory, keys, stripe, registry = FakeDirectory(), FakeKeys(), FakeStripe(), FakeRegistry()
    service = CheckoutService(
        directory, keys, stripe, registry, session_params, clock=lambda: 1_800_000_000.0
    )
    return World(directory, keys, stripe, registry, service)


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
    assert [s.session_id for s in state.sessions] == [result.session.id]
    assert state.pending_attempt is None
    assert world.registry.lease == {}


def test_second_checkout_expires_the_first(world: World) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id

    second = world.service.create_checkout(request(), api_key_id=KEY)

    assert second.expired_sessions == 1
    assert world.stripe.open_ids() == [second.session.id]
    assert {s.session_id: s.status for s in world.state().sessions} == {
        first: SessionStatus.EXPIRED,
        second.session.id: SessionStatus.OPEN,
    }


def test_open_sessions_are_expired_concurrently(world: World) -> None:
    key = ReferenceKey(COMPANY, "ref-1")
    for _ in range(3):
        session = world.stripe.create_session(
            "sk_test_current", None, json.dumps({"ui_mode": "hosted_page"}), str(uuid.uuid4())
        )
        world.registry.record_orphan(key, session, None, "hosted_page")

    result = world.service.create_checkout(request(), api_key_id=KEY)

    assert result.expired_sessions == 3
    assert world.stripe.open_ids() == [result.session.id]
    assert all(name != "MainThread" for name in world.stripe.expire_threads)


def test_a_completed_prior_session_is_409_and_nothing_is_created(world: World) -> None:
    first = world.service.create_checkout(request(), api_key_id=KEY).session.id
    world.stripe.sessions[first] = replace(world.stripe.sessions[first], status=SessionStatus.COMPLETE)

    with pytest.raises(AlreadyPaid):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert len(world.stripe.sessions) == 1
    assert world.state().completed_session_id == first
    assert world.registry.lease == {}


def test_a_pending_attempt_is_replayed_recorded_and_expired(world: World) -> None:
    world.service.create_checkout(request(), api_key_id=KEY)
    # A previous invocation died right after Stripe created its session.
    world.stripe.fail_create.append(RuntimeError("the Lambda died"))
    with pytest.raises(RuntimeError):
        world.service.create_checkout(request(), api_key_id=KEY)
    pending = world.state().pending_attempt
    assert pending is not None
    world.stripe.create_session("sk_test_current", None, pending.params_json, pending.idempotency_key)

    result = world.service.create_checkout(request(), api_key_id=KEY)

    statuses = {s.session_id: s.status for s in world.state().sessions}
    assert world.stripe.open_ids() == [result.session.id]
    assert set(statuses) == set(world.stripe.sessions)
    assert list(statuses.values()).count(SessionStatus.OPEN) == 1


def test_a_definite_stripe_refusal_leaves_no_pending_attempt(world: World) -> None:
    world.stripe.fail_create.append(StripeRejected(502, "StripeRejected", "Stripe rejected the checkout: no"))

    with pytest.raises(StripeRejected):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.state().pending_attempt is None


def test_an_uncertain_stripe_failure_keeps_the_pending_attempt(world: World) -> None:
    world.stripe.fail_create.append(UpstreamFailure(504, "StripeTimeout", "Stripe did not answer in time."))

    with pytest.raises(UpstreamFailure):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.state().pending_attempt is not None
    assert world.registry.lease == {}


def test_a_refused_key_is_fetched_again_once(world: World) -> None:
    world.stripe.valid_keys = {"sk_test_rotated"}

    def rotated(secret_name: str, *, refresh: bool = False) -> str:
        world.keys.fetches.append(refresh)
        return "sk_test_rotated" if refresh else "sk_test_current"

    world.keys.get = rotated  # type: ignore[method-assign]

    world.service.create_checkout(request(), api_key_id=KEY)

    assert world.keys.fetches == [False, True]


def test_a_key_refused_twice_is_a_credentials_failure(world: World) -> None:
    world.stripe.valid_keys = set()

    with pytest.raises(StripeCredentialsUnusable):
        world.service.create_checkout(request(), api_key_id=KEY)

    assert world.keys.fetches == [False, True]


def test_a_lease_lost_before_recording_expires_and_records_the_session(world: World) -> None:
    world.registry.lose_lease_on_record = True

    with pytest.raises(CheckoutInProgress):
        world.service.create_checkout(request(), api_key_id=KEY)

    [record] = world.state().sessions
    assert record.status is SessionStatus.EXPIRED
    assert world.stripe.open_ids() == []


def test_a_reference_in_progress_is_409(world: World) -> None:
    world.registry.lease[ReferenceKey(COMPANY, "ref-1")] = "other"

    with pytest.raises(CheckoutInProgress):
        world.service.create_checkout(request(), api_key_id=KEY)


def test_a_disabled_company_is_not_configured_for_its_own_key(world: World) -> None:
    world.directory.settings = replace(SETTINGS, checkout_enabled=False)

    with pytest.raises(CheckoutNotConfigured):
        world.service.create_checkout(request(), api_key_id=KEY)


def test_a_key_bound_to_another_company_is_refused_before_anything_else_is_read(world: World) -> None:
    world.directory.catalogue.clear()  # a catalogue read would turn into a 400 naming the article

    with pytest.raises(AccessDenied):
        world.service.create_checkout(request(), api_key_id="key-of-another-company")

    assert world.stripe.sessions == {} and world.keys.fetches == []
    assert world.registry.states == {} and world.registry.lease == {}


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
        world.directory, world.keys, world.stripe, world.registry, session_params,
        access=AccessPolicy(allow_unbound=True),
    )  # fmt: skip
    assert local.create_checkout(request(), api_key_id=None).session.status is SessionStatus.OPEN
    world.directory.settings = None
    with pytest.raises(CheckoutNotConfigured):
        local.create_checkout(request(), api_key_id=None)


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


def test_zero_total_is_refused_before_stripe(world: World) -> None:
    key = ArticleKey(1, 42)
    world.directory.catalogue[key] = Article(key, "Free", 0, "sek")

    with pytest.raises(InvalidRequest) as caught:
        world.service.create_checkout(request(), api_key_id=KEY)

    assert caught.value.errors[0].field_name == "Articles"
    assert world.stripe.sessions == {}
