"""How a Stripe session's state changes its reference: the one place that decides.

The checkout path (a prior session found paid while it was being expired), the webhook
receiver, the status operation and the reconciler all learn things about sessions; each
of them hands what it learned to `transition` and stores what comes back. Nothing else
decides whether a reference is paid, settling or payable again, or which booking events
are owed.

The rules, which hold however late, duplicated or out of order Stripe's news arrives:

- A session's state only moves forward: open -> processing -> paid | failed, and
  open -> expired. A late `expired` never un-pays, a `failed` never undoes a success, and
  news already known changes nothing (so a duplicate event publishes nothing).
- The first session to be paid pays the reference ("Checkout Paid"); a later one is a
  double payment ("Checkout Double Payment"), recorded beside it and never replacing it.
- A completed session whose delayed payment is settling makes a payable reference
  "processing" (a new checkout is refused until the outcome is known); if it fails the
  reference is payable again ("Checkout Payment Failed").
- "Checkout Expired" is owed only when the reference's current session expires while
  the reference is payable: the booking's checkout lapsed unpaid. Sessions this service
  expires because a newer checkout replaced them are not news to the booking system.
- A double payment may be refunded (`refundable`), never the payment that pays the
  reference; the refund itself is the reconciler's follow-up ("Checkout Refunded").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from checkout.domain import (
    CheckoutSession,
    PaymentState,
    ReferenceKey,
    ReferencePayment,
    Refund,
    SessionState,
)


class BookingEvent(StrEnum):
    """The booking events this service publishes (their EventBridge detail-type)."""

    PAID = "Checkout Paid"
    PAYMENT_FAILED = "Checkout Payment Failed"
    EXPIRED = "Checkout Expired"
    DOUBLE_PAYMENT = "Checkout Double Payment"
    REFUNDED = "Checkout Refunded"


# How far along a session is; a state may only be replaced by one further along.
_PROGRESS = {
    SessionState.OPEN: 0,
    SessionState.PROCESSING: 1,
    SessionState.EXPIRED: 2,
    SessionState.PAID: 2,
    SessionState.FAILED: 2,
}


@dataclass(frozen=True)
class Transition:
    """What applying one piece of news does: the session's and the reference's new states."""

    session_state: SessionState
    payment: ReferencePayment
    events: tuple[BookingEvent, ...] = ()
    changed: bool = False


def transition(
    payment: ReferencePayment,
    current_session_id: str | None,
    session_id: str,
    recorded: SessionState,
    observed: SessionState,
    *,
    replacing_current: bool = False,
) -> Transition:
    """Apply `observed` (what Stripe says of `session_id` now) to a reference.

    `recorded` is the session's state in the registry, `payment` and
    `current_session_id` the reference's; `replacing_current` is True while a checkout
    holds the reference (its new session is about to become current, and the expiry of
    the old one is its own doing, not news). Returns the states to store and the booking
    events owed; `changed` is False when the news was already known or is stale.
    """
    if _PROGRESS[observed] <= _PROGRESS[recorded]:
        return Transition(recorded, payment)
    events: tuple[BookingEvent, ...] = ()
    if observed is SessionState.PAID:
        if payment.paid_session_id is None:
            payment = ReferencePayment(PaymentState.PAID, paid_session_id=session_id)
            events = (BookingEvent.PAID,)
        elif payment.paid_session_id != session_id and session_id not in payment.extra_paid_session_ids:
            payment = replace(payment, extra_paid_session_ids=(*payment.extra_paid_session_ids, session_id))
            events = (BookingEvent.DOUBLE_PAYMENT,)
    elif observed is SessionState.PROCESSING:
        if payment.state is PaymentState.PAYABLE:
            payment = replace(payment, state=PaymentState.PROCESSING, processing_session_id=session_id)
    elif observed is SessionState.FAILED:
        if payment.processing_session_id == session_id:
            payment = replace(payment, state=PaymentState.PAYABLE, processing_session_id=None)
            events = (BookingEvent.PAYMENT_FAILED,)
        elif payment.state is PaymentState.PAYABLE:
            # The failure overtook the news that the payment was settling: still news.
            events = (BookingEvent.PAYMENT_FAILED,)
    elif session_id == current_session_id and payment.state is PaymentState.PAYABLE and not replacing_current:
        events = (BookingEvent.EXPIRED,)  # observed is EXPIRED: the booking's checkout lapsed
    return Transition(observed, payment, events, changed=True)


def refundable(payment: ReferencePayment, session_id: str) -> bool:
    """Whether `session_id` paid a reference that another session had already paid.

    Only such a later payment may be refunded as a duplicate; the payment that pays the
    reference (`paid_session_id`) never is, whatever else is recorded.
    """
    return session_id in payment.extra_paid_session_ids and session_id != payment.paid_session_id


def event_detail(
    event: BookingEvent,
    key: ReferenceKey,
    session: CheckoutSession,
    payment: ReferencePayment,
    refund: Refund | None = None,
) -> dict[str, Any]:
    """The `detail` of a booking event about `session`, as consumers receive it.

    A double payment and its refund also name the session that pays the reference
    (`PaidSessionId`); the refund names Stripe's refund and the amount returned.
    """
    detail: dict[str, Any] = {
        "CompanyId": str(key.company_id),
        "InternalReferenceId": key.reference,
        "SessionId": session.id,
        "PaymentIntentId": session.payment_intent_id,
        "AmountTotal": session.amount_total,
        "Currency": session.currency,
        "PaymentStatus": session.payment_status,
        "Livemode": session.livemode,
    }
    if event in {BookingEvent.DOUBLE_PAYMENT, BookingEvent.REFUNDED}:
        detail["PaidSessionId"] = payment.paid_session_id
    if refund is not None:
        detail["RefundId"] = refund.id
        detail["AmountRefunded"] = refund.amount
    return {k: v for k, v in detail.items() if v is not None}
