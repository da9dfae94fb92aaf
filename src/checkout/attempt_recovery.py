"""Finishing what a dead request started: replaying its pending attempt and recording the result.

A checkout stores its attempt (the spec and a Stripe idempotency key) before it calls
Stripe. If the request dies before recording the session, the attempt stays on the
reference, and whoever holds the reference next, the next checkout or the reconciler,
replays it here: the same create with the same key makes Stripe answer with the session
it made then (or make it now), which is then expired, unless it is the current one, and
recorded. Both callers use these two functions, so an attempt is finished one way only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from checkout.domain import CheckoutSession, CheckoutSpec, Merchant, OpenSession, PendingAttempt, SessionState
from checkout.errors import StripeRejected, UpstreamFailure
from checkout.observability import logger
from checkout.session_registry import SessionWrite


class SessionMaker(Protocol):
    """The part of the Stripe gateway a replay needs."""

    def create_session(
        self, merchant: Merchant, spec: CheckoutSpec, idempotency_key: str
    ) -> CheckoutSession: ...

    def expire_session(self, merchant: Merchant, session_id: str) -> CheckoutSession: ...


@dataclass(frozen=True)
class Replayed:
    """What became of an attempt a dead request left behind."""

    attempt: PendingAttempt
    created: CheckoutSession | None = None  # None: nothing was (or will be) created
    final: CheckoutSession | None = None  # its state after we expired it (or left the current one)
    failure: UpstreamFailure | None = None  # Stripe failed: the attempt stays for later


def replay(
    gateway: SessionMaker, secret_name: str, attempt: PendingAttempt, current_session_id: str | None = None
) -> Replayed:
    """Replay a dead request's create (Stripe answers with the session it made then) and
    expire the result unless it is the reference's current session; an attempt that
    cannot be replayed is dropped."""
    try:
        spec = attempt.spec()
    except ValueError:
        logger.error("Dropped an unreadable pending attempt", extra={"started_at_ms": attempt.started_at_ms})
        return Replayed(attempt)
    merchant = Merchant(secret_name, spec.stripe_account)
    try:
        created = gateway.create_session(merchant, spec, attempt.idempotency_key)
    except StripeRejected:
        return Replayed(attempt)  # a definite refusal: nothing was created
    except UpstreamFailure as failure:
        return Replayed(attempt, failure=failure)
    if created.id == current_session_id:
        return Replayed(attempt, created, created)
    try:
        return Replayed(attempt, created, gateway.expire_session(merchant, created.id))
    except UpstreamFailure:
        return Replayed(attempt, created)


def recovered_write(
    replayed: Replayed, still_open: list[OpenSession], news: list[CheckoutSession]
) -> SessionWrite:
    """The record of a replayed attempt's session. A session left open is added to
    `still_open`; one that turned out paid or settling to `news`, for the transition
    function (it is recorded as created, and the news records the rest)."""
    assert replayed.created is not None
    spec = replayed.attempt.spec()
    final = replayed.final
    logger.warning(
        "Recovered a session an unfinished request had created", extra={"session_id": replayed.created.id}
    )
    if final is None or final.state is SessionState.OPEN:  # not expired: recorded open, not current
        still_open.append(OpenSession(replayed.created.id, spec.stripe_account))
        final = replayed.created
    elif final.state is not SessionState.EXPIRED:
        news.append(final)
        final = replayed.created
    return SessionWrite(
        final,
        spec.stripe_account,
        spec.ui_mode.value,
        created=True,
        created_at_ms=replayed.attempt.started_at_ms,
    )
