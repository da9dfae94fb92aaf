"""One contract, two registries: the DynamoDB adapter (on moto) and the in-memory fake.

Every behaviour the use case relies on is asserted against both, so a unit test that
passes against the fake says something true about the real registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from checkout.aws_clients import dynamodb_client
from checkout.domain import (
    CheckoutSession,
    LineItem,
    OpenSession,
    PaymentState,
    PendingAttempt,
    ReferenceKey,
    Refund,
    SessionState,
    SessionStatus,
)
from checkout.errors import AlreadyPaid, CheckoutInProgress, LeaseLost, PaymentProcessing
from checkout.reference_transitions import BookingEvent
from checkout.session_registry import DynamoSessionRegistry, SessionWrite
from tests.conftest import TABLES
from tests.fakes import Clock, InMemorySessionRegistry, checkout_spec

LEASE_SECONDS = 30


@pytest.fixture(params=["dynamodb", "in-memory"])
def registry(request: pytest.FixtureRequest, clock: Clock) -> Iterator[DynamoSessionRegistry]:
    if request.param == "dynamodb":
        request.getfixturevalue("stack")
        yield DynamoSessionRegistry(dynamodb_client(), TABLES["SESSIONS_TABLE_NAME"], LEASE_SECONDS, clock)
    else:
        yield InMemorySessionRegistry(LEASE_SECONDS, clock)  # type: ignore[misc]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key() -> ReferenceKey:
    return ReferenceKey(uuid.uuid4(), f"booking-{uuid.uuid4().hex[:6]}")


def attempt(key: ReferenceKey, name: str = "a") -> PendingAttempt:
    spec = checkout_spec(
        key.company_id,
        key.reference,
        line_item=LineItem("Haircut", 45000, "sek", 1),
        confirmation_url="https://shop.example/done",
    )
    return PendingAttempt.of(f"{name}-{uuid.uuid4().hex}", spec, 1)


def session(
    sid: str, status: SessionStatus = SessionStatus.OPEN, payment_status: str = "unpaid"
) -> CheckoutSession:
    return CheckoutSession(
        id=sid, status=status, payment_status=payment_status, amount_total=45000, currency="sek"
    )


def checkout(registry: DynamoSessionRegistry, key: ReferenceKey, sid: str) -> None:
    """One whole checkout: the priors expired, `sid` recorded as current and open."""
    with registry.reference(key, attempt(key)) as ref:
        expired = [
            SessionWrite(session(p.session_id, SessionStatus.EXPIRED), None) for p in ref.open_sessions
        ]
        ref.commit(
            [*expired, SessionWrite(session(sid), None, "hosted", created=True)],
            current_session_id=sid,
            open_sessions=[OpenSession(sid, None)],
        )


def test_a_new_reference_has_nothing_open(registry: DynamoSessionRegistry, key: ReferenceKey) -> None:
    mine = attempt(key)
    with registry.reference(key, mine) as ref:
        assert ref.open_sessions == ()
        assert ref.stale_attempts == ()
        assert ref.attempt == mine
        assert registry.load(key).lease_held
    state = registry.load(key)
    assert not state.lease_held
    assert state.pending_attempts == (mine,)  # left without commit: kept for a replay


def test_a_commit_records_the_session_and_the_next_checkout_sees_it_open(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)) as ref:
        assert ref.open_sessions == (OpenSession("cs_1", None),)
        assert ref.current_session_id == "cs_1"
        ref.release(keep_attempts=())
    state = registry.load(key)
    assert [(s.session_id, s.state, s.ui_mode) for s in state.sessions] == [
        ("cs_1", SessionState.OPEN, "hosted")
    ]
    assert state.pending_attempts == ()
    assert state.current_session_id == "cs_1"


def test_priors_are_updated_and_the_new_one_becomes_current(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    checkout(registry, key, "cs_2")
    state = registry.load(key)
    assert {s.session_id: s.status for s in state.sessions} == {
        "cs_1": SessionStatus.EXPIRED,
        "cs_2": SessionStatus.OPEN,
    }
    assert state.open_sessions == (OpenSession("cs_2", None),)
    assert state.current_session_id == "cs_2"


def test_a_held_reference_refuses_a_second_holder_until_released(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    with registry.reference(key, attempt(key)) as ref:
        with pytest.raises(CheckoutInProgress), registry.reference(key, attempt(key, "b")):
            pass
        ref.release(keep_attempts=())
    with registry.reference(key, attempt(key, "c")) as again:
        again.release(keep_attempts=())


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_commit(
    registry: DynamoSessionRegistry, key: ReferenceKey, clock: Clock
) -> None:
    with registry.reference(key, attempt(key)) as old:
        clock.now += LEASE_SECONDS + 1
        with registry.reference(key, attempt(key, "new")) as new:
            assert old.attempt is not None
            assert [a.idempotency_key for a in new.stale_attempts] == [old.attempt.idempotency_key]
            with pytest.raises(LeaseLost):
                old.commit([], current_session_id=None, open_sessions=[])
            new.release(keep_attempts=())
        old.committed = True  # its release would be refused anyway


def test_unresolved_attempts_stay_for_the_next_holder(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    first = attempt(key, "first")
    with registry.reference(key, first) as ref:
        ref.commit([], current_session_id=None, open_sessions=[], keep_attempts=[first])
    with registry.reference(key, attempt(key, "second")) as ref:
        assert ref.stale_attempts == (first,)
        assert ref.stale_attempts[0].spec().reference == key.reference
        ref.release(keep_attempts=())
    assert registry.load(key).pending_attempts == ()


def test_news_of_a_payment_marks_the_reference_paid_once_and_owes_one_event(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    paid = session("cs_1", SessionStatus.COMPLETE, "paid")

    first = registry.apply_news(key, paid)
    again = registry.apply_news(key, paid)

    assert first is not None and first.events == (BookingEvent.PAID,)
    assert again is not None and not again.changed
    state = registry.load(key)
    assert state.payment.state is PaymentState.PAID
    assert state.payment.paid_session_id == "cs_1"
    assert state.open_sessions == ()
    assert state.owed_events == ("Checkout Paid#cs_1",)
    with pytest.raises(AlreadyPaid), registry.reference(key, attempt(key)):
        pass


def test_a_settling_payment_blocks_checkouts_until_it_fails(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    settling = session("cs_1", SessionStatus.COMPLETE, "unpaid")
    registry.apply_news(key, settling)
    with pytest.raises(PaymentProcessing), registry.reference(key, attempt(key)):
        pass

    failed = registry.apply_news(key, replace(settling, payment_failed=True))

    assert failed is not None and failed.events == (BookingEvent.PAYMENT_FAILED,)
    assert registry.load(key).payment.state is PaymentState.PAYABLE
    checkout(registry, key, "cs_2")


def test_a_late_expiry_never_unpays(registry: DynamoSessionRegistry, key: ReferenceKey) -> None:
    checkout(registry, key, "cs_1")
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))

    late = registry.apply_news(key, session("cs_1", SessionStatus.EXPIRED))

    assert late is not None and not late.changed
    assert registry.load(key).payment.state is PaymentState.PAID


def test_news_of_a_session_the_registry_does_not_hold_is_ignored(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    assert registry.apply_news(key, session("cs_unknown", SessionStatus.COMPLETE, "paid")) is None
    checkout(registry, key, "cs_1")
    assert registry.apply_news(key, session("cs_other", SessionStatus.COMPLETE, "paid")) is None
    assert registry.load(key).payment.state is PaymentState.PAYABLE


def test_the_current_session_expiring_owes_an_expired_event(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    result = registry.apply_news(key, session("cs_1", SessionStatus.EXPIRED))
    assert result is not None and result.events == (BookingEvent.EXPIRED,)
    assert registry.load(key).open_sessions == ()


def test_creations_of_the_last_minute_are_remembered(
    registry: DynamoSessionRegistry, key: ReferenceKey, clock: Clock
) -> None:
    checkout(registry, key, "cs_1")
    clock.now += 30
    checkout(registry, key, "cs_2")
    with registry.reference(key, attempt(key)) as ref:
        assert len(ref.creations_within(int(clock.now * 1000))) == 2
        clock.now += 45
        assert len(ref.creations_within(int(clock.now * 1000))) == 1
        ref.release(keep_attempts=())


def test_a_session_recorded_without_the_lease_is_in_the_history(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    with registry.reference(key, attempt(key)) as ref:
        ref.record_unleased(
            SessionWrite(session("cs_orphan", SessionStatus.EXPIRED), None, "hosted", created=True)
        )
    assert [s.session_id for s in registry.load(key).sessions] == ["cs_orphan"]


def test_a_session_is_found_by_its_id_alone(registry: DynamoSessionRegistry, key: ReferenceKey) -> None:
    checkout(registry, key, f"cs_find_{key.reference}")

    found = registry.find_session(f"cs_find_{key.reference}")

    assert found is not None
    assert found[0] == key
    assert found[1].state is SessionState.OPEN
    assert registry.find_session("cs_nobody") is None


def test_a_commit_retried_after_its_answer_was_lost_is_recognised_as_done(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    # What the SDK's retry of an applied transaction looks like: the same commit again,
    # whose condition (the lease is ours) fails on the commit itself.
    with registry.reference(key, attempt(key)) as ref:
        writes = [SessionWrite(session("cs_1"), None, "hosted", created=True)]
        ref.commit(writes, current_session_id="cs_1", open_sessions=[OpenSession("cs_1", None)])
        ref.commit(writes, current_session_id="cs_1", open_sessions=[OpenSession("cs_1", None)])
    state = registry.load(key)
    assert state.current_session_id == "cs_1"
    assert not state.lease_held


def test_a_renewed_lease_outlives_its_length_and_lapses_once_renewals_stop(
    registry: DynamoSessionRegistry, key: ReferenceKey, clock: Clock
) -> None:
    with registry.reference(key, attempt(key)) as held:
        for _ in range(3):
            clock.now += LEASE_SECONDS * 2 / 3
            held.renew()
            with pytest.raises(CheckoutInProgress), registry.reference(key, attempt(key, "b")):
                pass
        clock.now += LEASE_SECONDS + 1
        with registry.reference(key, attempt(key, "c")) as taker:
            with pytest.raises(LeaseLost):
                held.renew()
            taker.release(keep_attempts=())
        held.committed = True


def test_owed_events_are_listed_until_settled(registry: DynamoSessionRegistry, key: ReferenceKey) -> None:
    checkout(registry, key, "cs_1")
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))

    [owed] = registry.owed_events(key)

    assert (owed.event_id, owed.detail_type) == ("Checkout Paid#cs_1", "Checkout Paid")
    assert owed.detail["SessionId"] == "cs_1" and owed.detail["PaymentStatus"] == "paid"
    registry.settle_owed(key, [owed.event_id])
    registry.settle_owed(key, [owed.event_id])  # settling twice is harmless
    assert registry.owed_events(key) == []


# -- the reconciler's due index ------------------------------------------------------------


def due(registry: DynamoSessionRegistry, key: ReferenceKey, before_ms: int | None = None) -> list[str | None]:
    """What the due index holds of the reference: session ids, None for the head."""
    return [r.session_id for r in registry.due(before_ms, key.company_id) if r.key == key]


def publish(registry: DynamoSessionRegistry, key: ReferenceKey) -> list[str]:
    """What the relay does: read the outbox, then settle what it published."""
    owed = [e.event_id for e in registry.owed_events(key)]
    registry.settle_owed(key, owed)
    return owed


def test_an_open_session_is_due_until_a_new_checkout_expires_it(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    [record] = [r for r in registry.due(None, key.company_id) if r.key == key]
    assert (record.session_id, record.state) == ("cs_1", SessionState.OPEN)
    assert registry.load(key).sessions[0].due

    checkout(registry, key, "cs_2")

    assert due(registry, key) == ["cs_2"]
    assert not registry.load(key).sessions[0].due


def test_a_paid_session_is_due_until_its_events_are_published(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))
    assert due(registry, key) == ["cs_1"]  # Checkout Paid is owed

    assert publish(registry, key) == ["Checkout Paid#cs_1"]

    assert due(registry, key) == []


def test_a_settling_session_stays_due_until_it_fails_and_its_event_is_published(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    settling = session("cs_1", SessionStatus.COMPLETE, "unpaid")
    registry.apply_news(key, settling)
    assert due(registry, key) == ["cs_1"]

    registry.apply_news(key, replace(settling, payment_failed=True))
    assert due(registry, key) == ["cs_1"]
    publish(registry, key)

    assert due(registry, key) == []


def test_news_that_settles_a_session_and_owes_nothing_takes_it_out_at_once(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)) as ref:  # cs_2 left open beside the current cs_1
        ref.commit(
            [SessionWrite(session("cs_2"), None, "hosted", created=True)],
            current_session_id=None,
            open_sessions=[OpenSession("cs_1", None), OpenSession("cs_2", None)],
        )

    expired = registry.apply_news(key, session("cs_2", SessionStatus.EXPIRED))

    assert expired is not None and expired.events == ()  # not the current session: no news
    assert due(registry, key) == ["cs_1"]


def test_a_double_payment_stays_due_until_its_refund_is_recorded_and_published(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)) as ref:  # a second session left open beside it
        ref.commit(
            [SessionWrite(session("cs_2"), None, "hosted", created=True)],
            current_session_id=None,
            open_sessions=[OpenSession("cs_1", None), OpenSession("cs_2", None)],
        )
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))
    double = registry.apply_news(key, session("cs_2", SessionStatus.COMPLETE, "paid"))
    assert double is not None and double.events == (BookingEvent.DOUBLE_PAYMENT,)

    publish(registry, key)

    assert due(registry, key) == ["cs_2"]  # its refund is not settled yet
    refund = Refund("re_1", 45000, "sek", "succeeded")
    assert registry.record_refund(key, "cs_2", refund)
    assert not registry.record_refund(key, "cs_2", refund)  # never twice
    [owed] = registry.owed_events(key)
    assert owed.event_id == "Checkout Refunded#cs_2"
    assert (owed.detail["RefundId"], owed.detail["AmountRefunded"]) == ("re_1", 45000)
    assert (owed.detail["SessionId"], owed.detail["PaidSessionId"]) == ("cs_2", "cs_1")
    assert registry.load(key).sessions[1].refund_id == "re_1"

    publish(registry, key)

    assert due(registry, key) == []


def test_the_reconciler_takes_a_double_payment_out_of_the_index_when_done(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)) as ref:
        ref.commit(
            [SessionWrite(session("cs_2"), None, "hosted", created=True)],
            current_session_id=None,
            open_sessions=[OpenSession("cs_1", None), OpenSession("cs_2", None)],
        )
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))
    registry.apply_news(key, session("cs_2", SessionStatus.COMPLETE, "paid"))
    publish(registry, key)

    registry.finished(key, "cs_2")  # e.g. the company does not refund double payments

    assert due(registry, key) == []


def test_finished_leaves_an_unsettled_session_in_the_index(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")

    registry.finished(key, "cs_1")

    assert due(registry, key) == ["cs_1"]


def test_a_held_reference_is_due_when_its_lease_runs_out_until_its_attempts_are_resolved(
    registry: DynamoSessionRegistry, key: ReferenceKey, clock: Clock
) -> None:
    now_ms = int(clock.now * 1000)
    with registry.reference(key, attempt(key)):
        [head] = [r for r in registry.due(None, key.company_id) if r.key == key]
        assert (head.session_id, head.due_at_ms) == (None, now_ms + LEASE_SECONDS * 1000)
        assert due(registry, key, now_ms) == []  # not before the lease runs out
    assert due(registry, key) == [None]  # left without commit: the attempt is pending

    with registry.reference(key, attempt(key, "next")) as ref:
        ref.commit([], current_session_id=None, open_sessions=[], keep_attempts=[ref.stale_attempts[0]])
    assert due(registry, key) == [None]  # an attempt was kept

    checkout(registry, key, "cs_1")

    assert due(registry, key) == ["cs_1"]


def test_without_an_attempt_the_reference_is_held_whatever_its_payment_state(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)):
        pass  # a request that died: its attempt stays
    registry.apply_news(key, session("cs_1", SessionStatus.COMPLETE, "paid"))
    with pytest.raises(AlreadyPaid), registry.reference(key, attempt(key)):
        pass

    with registry.reference(key) as ref:
        assert ref.attempt is None
        assert len(ref.stale_attempts) == 1
        with pytest.raises(CheckoutInProgress), registry.reference(key):
            pass
        ref.commit([], current_session_id=None, open_sessions=[], keep_attempts=[])

    state = registry.load(key)
    assert state.pending_attempts == ()
    assert state.payment.state is PaymentState.PAID
    assert None not in due(registry, key)


def test_a_reference_without_records_cannot_be_held_without_an_attempt(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    with pytest.raises(CheckoutInProgress), registry.reference(key):
        pass
    assert registry.load(key).sessions == ()


def test_due_records_come_oldest_first_and_can_be_looked_at_again_later(
    registry: DynamoSessionRegistry, key: ReferenceKey, clock: Clock
) -> None:
    other = ReferenceKey(key.company_id, f"{key.reference}-other")
    checkout(registry, key, "cs_1")
    clock.now += 1
    checkout(registry, other, "cs_2")
    first_ms = int((clock.now - 1) * 1000)

    assert [r.session_id for r in registry.due(None, key.company_id)] == ["cs_1", "cs_2"]
    assert [r.session_id for r in registry.due(first_ms, key.company_id)] == ["cs_1"]

    registry.look_again(key, "cs_1", first_ms + 60_000)

    assert [r.session_id for r in registry.due(None, key.company_id)] == ["cs_2", "cs_1"]
    assert [r.session_id for r in registry.due(first_ms + 1000, key.company_id)] == ["cs_2"]
    assert list(registry.due(None, uuid.uuid4())) == []


def test_the_current_session_expired_by_a_checkout_replacing_it_owes_no_event(
    registry: DynamoSessionRegistry, key: ReferenceKey
) -> None:
    checkout(registry, key, "cs_1")
    with registry.reference(key, attempt(key)) as ref:
        # Stripe's webhook for the expiry this checkout caused arrives before its commit.
        result = registry.apply_news(key, session("cs_1", SessionStatus.EXPIRED))
        ref.commit(
            [SessionWrite(session("cs_2"), None, "hosted", created=True)],
            current_session_id="cs_2",
            open_sessions=[OpenSession("cs_2", None)],
        )

    assert result is not None and result.changed and result.events == ()
    assert registry.load(key).owed_events == ()
