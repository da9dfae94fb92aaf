"""The one transition function, as a table of cases, and which payments may be refunded."""

from __future__ import annotations

import uuid

import pytest

from checkout.domain import (
    CheckoutSession,
    PaymentState,
    ReferenceKey,
    ReferencePayment,
    Refund,
    SessionState,
    SessionStatus,
)
from checkout.reference_transitions import BookingEvent, event_detail, refundable, transition

OPEN, PROCESSING, PAID, FAILED, EXPIRED = (
    SessionState.OPEN,
    SessionState.PROCESSING,
    SessionState.PAID,
    SessionState.FAILED,
    SessionState.EXPIRED,
)
PAYABLE = ReferencePayment()
PAID_BY_1 = ReferencePayment(PaymentState.PAID, paid_session_id="cs_1")
SETTLING_1 = ReferencePayment(PaymentState.PROCESSING, processing_session_id="cs_1")


@pytest.mark.parametrize(
    ("payment", "session", "recorded", "observed", "events", "after"),
    [
        # news already known, or stale, changes nothing
        (PAYABLE, "cs_1", PAID, EXPIRED, (), None),
        (PAYABLE, "cs_1", OPEN, OPEN, (), None),
        # the first payment pays the reference
        (PAYABLE, "cs_1", OPEN, PAID, (BookingEvent.PAID,), PAID_BY_1),
        (SETTLING_1, "cs_1", PROCESSING, PAID, (BookingEvent.PAID,), PAID_BY_1),
        # a later one is a double payment, recorded beside it
        (
            PAID_BY_1,
            "cs_2",
            OPEN,
            PAID,
            (BookingEvent.DOUBLE_PAYMENT,),
            ReferencePayment(PaymentState.PAID, paid_session_id="cs_1", extra_paid_session_ids=("cs_2",)),
        ),
        (
            PAID_BY_1,
            "cs_2",
            PROCESSING,
            PAID,
            (BookingEvent.DOUBLE_PAYMENT,),
            ReferencePayment(PaymentState.PAID, paid_session_id="cs_1", extra_paid_session_ids=("cs_2",)),
        ),
        # a settling payment blocks; its failure makes the reference payable again
        (PAYABLE, "cs_1", OPEN, PROCESSING, (), SETTLING_1),
        (SETTLING_1, "cs_1", PROCESSING, FAILED, (BookingEvent.PAYMENT_FAILED,), PAYABLE),
        (PAYABLE, "cs_1", OPEN, FAILED, (BookingEvent.PAYMENT_FAILED,), PAYABLE),
        # the current session lapsing is news; a superseded one is not
        (PAYABLE, "cs_1", OPEN, EXPIRED, (BookingEvent.EXPIRED,), PAYABLE),
        (PAYABLE, "cs_0", OPEN, EXPIRED, (), PAYABLE),
        (PAID_BY_1, "cs_1", OPEN, EXPIRED, (), PAID_BY_1),
    ],
)
def test_transition(
    payment: ReferencePayment,
    session: str,
    recorded: SessionState,
    observed: SessionState,
    events: tuple[BookingEvent, ...],
    after: ReferencePayment | None,
) -> None:
    result = transition(payment, "cs_1", session, recorded, observed)

    assert result.events == events
    assert result.changed is (after is not None)
    assert result.payment == (payment if after is None else after)


def test_only_a_later_payment_may_be_refunded_never_the_one_that_stands() -> None:
    doubled = ReferencePayment(PaymentState.PAID, paid_session_id="cs_1", extra_paid_session_ids=("cs_2",))
    confused = ReferencePayment(PaymentState.PAID, paid_session_id="cs_1", extra_paid_session_ids=("cs_1",))

    assert refundable(doubled, "cs_2")
    assert not refundable(doubled, "cs_1")
    assert not refundable(confused, "cs_1")
    assert not refundable(PAID_BY_1, "cs_3")


def test_a_refund_event_names_the_payment_that_stands_and_the_refund() -> None:
    key = ReferenceKey(uuid.uuid4(), "booking-1")
    session = CheckoutSession("cs_2", SessionStatus.COMPLETE, payment_intent_id="pi_2", amount_total=45000)
    doubled = ReferencePayment(PaymentState.PAID, paid_session_id="cs_1", extra_paid_session_ids=("cs_2",))

    detail = event_detail(
        BookingEvent.REFUNDED, key, session, doubled, Refund("re_1", 45000, "sek", "succeeded")
    )

    assert detail["SessionId"] == "cs_2" and detail["PaidSessionId"] == "cs_1"
    assert (detail["RefundId"], detail["AmountRefunded"]) == ("re_1", 45000)
    assert "RefundId" not in event_detail(BookingEvent.PAID, key, session, doubled)
