"""Hearing Stripe: signed webhook events about Checkout Sessions, applied to the registry.

Stripe calls `POST /payment/stripe/v1/webhook/{CompanyId}` (an endpoint registered in the
company's own Stripe account) or `/payment/stripe/v1/webhook/connect` (the platform's
Connect endpoint, for companies on connected accounts). The signature is the only
authentication these routes have: `Stripe-Signature` is checked with stripe-python's own
verification over the exact raw body, against every signing secret stored for the
endpoint (several at once, so a secret can be rolled without losing events), with
Stripe's default tolerance of 300 s.

Stripe delivers at least once, late and out of order, and retries anything but a 2xx
for three days. So what an event says goes through the one transition function, which
only moves a session forward (a duplicate or stale event changes nothing), the booking
events it owes are recorded in the same write and then relayed, and a transient AWS
failure is a 5xx so that Stripe delivers again; a redelivery also publishes events a
dead invocation still owed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

import stripe

from checkout.aws_clients import access_denied
from checkout.booking_events import OutboxRelay
from checkout.domain import CheckoutSession, CompanySettings, ReferenceKey, SessionRecord
from checkout.errors import CheckoutError
from checkout.observability import count, logger
from checkout.reference_transitions import Transition
from checkout.request_decoding import InputRefused, parse_json
from checkout.secrets_store import SecretCache, SecretForbidden, SecretUnavailable
from checkout.stripe_gateway import SESSION_EVENT_TYPES, session_from_stripe

CONNECT = "connect"
HANDLED_EVENTS = SESSION_EVENT_TYPES
_REFRESH_INTERVAL = 60.0  # seconds between re-reads of the secrets after a signature matched none


def signing_secret_name(prefix: str, scope: str) -> str:
    """The Secrets Manager name of an endpoint's signing secrets (`scope`: a company id or `connect`)."""
    return f"{prefix}webhook/{scope}"


def encode_signing_secrets(secrets: list[str]) -> str:
    """The stored form of an endpoint's signing secrets, newest first."""
    return json.dumps({"signing_secrets": secrets})


def decode_signing_secrets(text: str) -> list[str]:
    """The signing secrets in a stored value (also a bare `whsec_...` string)."""
    text = text.strip()
    if text.startswith("whsec_"):
        return [text]
    try:
        secrets = json.loads(text).get("signing_secrets", [])
    except (ValueError, AttributeError):
        return []
    return [s for s in secrets if isinstance(s, str) and s.startswith("whsec_")]


class InvalidWebhook(CheckoutError):
    """A delivery that is not a verifiably signed Stripe event (400, nothing changes)."""

    error_code = "InvalidSignature"


class Outcome(StrEnum):
    """What a delivery did, for the answer and the log."""

    APPLIED = "applied"
    ALREADY_KNOWN = "already-known"
    IGNORED = "ignored"


class SessionNews(Protocol):
    """The registry, as the webhook receiver uses it."""

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None: ...

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None: ...


class StripeWebhookService:
    """Verifies, applies and relays one webhook delivery."""

    def __init__(
        self,
        secrets: SecretCache,
        secret_name_prefix: str,
        registry: SessionNews,
        relay: OutboxRelay,
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self._prefix = secret_name_prefix
        self._registry = registry
        self._relay = relay
        self._tolerance = tolerance_seconds
        self._clock = clock
        self._refreshed: dict[str, float] = {}
        self._lock = threading.Lock()

    def receive(self, scope: str, payload: bytes, signature: str | None) -> Outcome:
        """Handle one delivery to the endpoint of `scope` (a company id, or `connect`)."""
        outcome = apply_session_event(
            self._registry, self._relay, scope, self._verified(scope, payload, signature)
        )
        if outcome is not Outcome.IGNORED:
            count("WebhookEventsApplied" if outcome is Outcome.APPLIED else "WebhookEventsKnown")
        return outcome

    def _verified(self, scope: str, payload: bytes, signature: str | None) -> dict[str, Any]:
        if not signature:
            raise InvalidWebhook("The Stripe-Signature header is missing.")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidWebhook("The body is not UTF-8 text.") from None
        if not self._matches_any(scope, text, signature, refresh=False) and not (
            self._may_refresh(scope) and self._matches_any(scope, text, signature, refresh=True)
        ):
            raise InvalidWebhook("The Stripe-Signature does not verify, or is too old.")
        try:
            event = parse_json(text)  # within the edge's limits, even signed
        except (ValueError, InputRefused):
            raise InvalidWebhook("The body is not a Stripe event.") from None
        if (
            not isinstance(event, dict)
            or event.get("object") != "event"
            or not isinstance(event.get("type"), str)
        ):
            raise InvalidWebhook("The body is not a Stripe event.")
        return event

    def _matches_any(self, scope: str, text: str, signature: str, *, refresh: bool) -> bool:
        try:
            stored = self._secrets.get(signing_secret_name(self._prefix, scope), refresh=refresh)
        except SecretForbidden:
            # Our deployment's fault, not the sender's: a 5xx, so Stripe delivers again
            # (for up to three days) once the role may read the secret.
            raise access_denied("Secrets Manager") from None
        except SecretUnavailable:
            return False  # no endpoint of that name: the same answer as a bad signature
        for secret in decode_signing_secrets(stored):
            try:
                stripe.WebhookSignature.verify_header(text, signature, secret, self._tolerance)
            except stripe.SignatureVerificationError:
                continue
            return True
        return False

    def _may_refresh(self, scope: str) -> bool:
        # A secret rolled since it was cached is read again, but not on every forged
        # request: at most once a minute per endpoint.
        now = self._clock()
        with self._lock:
            if now - self._refreshed.get(scope, -_REFRESH_INTERVAL) < _REFRESH_INTERVAL:
                return False
            self._refreshed[scope] = now
            return True


def apply_session_event(
    registry: SessionNews, relay: OutboxRelay, scope: str, event: dict[str, Any]
) -> Outcome:
    """Apply one Stripe event, delivered to the endpoint of `scope` or fetched from Stripe's
    API for it (the reconciler), through the transition function, and relay what it owes."""
    kind = event.get("type")
    if kind not in HANDLED_EVENTS:
        return Outcome.IGNORED
    data = event.get("data")
    session_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session_object, dict) or session_object.get("object") != "checkout.session":
        raise InvalidWebhook("The event carries no Checkout Session.")
    try:
        session = session_from_stripe(
            session_object, payment_failed=kind == "checkout.session.async_payment_failed"
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidWebhook("The event's Checkout Session is malformed.") from None
    found = registry.find_session(session.id)
    if found is None or not _belongs(scope, event, *found):
        logger.info("Webhook for a session this endpoint does not own", extra={"session_id": session.id})
        return Outcome.IGNORED
    key = found[0]
    result = registry.apply_news(key, session)
    relay.relay(key)
    return Outcome.APPLIED if result is not None and result.changed else Outcome.ALREADY_KNOWN


def _belongs(scope: str, event: dict[str, Any], key: ReferenceKey, record: SessionRecord) -> bool:
    if scope == CONNECT:
        # The platform's Connect endpoint hears every connected account: the event's
        # account must be the one the session was created on.
        return record.stripe_account is not None and event.get("account") == record.stripe_account
    return str(key.company_id) == scope and event.get("account") in {None, record.stripe_account}


def endpoint_scope(settings: CompanySettings) -> str:
    """Which endpoint hears a company's events: the platform's Connect endpoint for a
    company on a connected account, else the company's own."""
    return CONNECT if settings.stripe_account else str(settings.company_id)


class WebhookEndpoints:
    """Which webhook endpoints are registered: those with signing secrets stored."""

    def __init__(self, secrets: SecretCache, secret_name_prefix: str) -> None:
        self._secrets = secrets
        self._prefix = secret_name_prefix

    def registered(self, scope: str) -> bool:
        """Whether an endpoint for `scope` (a company id, or `connect`) has signing secrets."""
        try:
            return bool(decode_signing_secrets(self._secrets.get(signing_secret_name(self._prefix, scope))))
        except SecretForbidden:
            # There, but unreadable: its deliveries are failing, which is exactly when
            # the reconciler must look for undelivered events.
            return True
        except SecretUnavailable:
            return False
