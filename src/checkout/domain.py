"""Plain value types the use case works with, free of HTTP, boto3 and stripe."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from checkout.contract import UiMode


class SessionStatus(StrEnum):
    """A Checkout Session's status, as Stripe names it."""

    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


@dataclass(frozen=True)
class CompanySettings:
    """A company's Stripe Checkout settings (one item in the companies table)."""

    company_id: uuid.UUID
    checkout_enabled: bool
    stripe_secret_name: str
    stripe_account: str | None = None
    allowed_url_prefixes: tuple[str, ...] = ()
    default_confirmation_url: str | None = None
    default_cancel_url: str | None = None
    # The API Gateway key ids that may act for the company (see access.py).
    api_key_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ArticleKey:
    """Identifies an article in a company's catalogue."""

    article_type_id: int
    article_id: int


@dataclass(frozen=True)
class Article:
    """A catalogued article: what the payer sees and pays, in minor units."""

    key: ArticleKey
    name: str
    unit_amount: int
    currency: str
    active: bool = True


@dataclass(frozen=True)
class LineItem:
    """One line of a checkout, priced from the catalogue."""

    name: str
    unit_amount: int
    currency: str
    quantity: int


@dataclass(frozen=True)
class CheckoutSpec:
    """Everything the payment gateway needs to create one Checkout Session."""

    company_id: uuid.UUID
    reference: str
    ui_mode: UiMode
    locale: str
    line_items: tuple[LineItem, ...]
    article_type_ids: tuple[int, ...]
    confirmation_url: str
    cancel_url: str | None
    stripe_account: str | None


@dataclass(frozen=True)
class CheckoutSession:
    """A Checkout Session as Stripe reports it."""

    id: str
    status: SessionStatus
    url: str | None = None
    client_secret: str | None = None
    customer_id: str | None = None
    payment_intent_id: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    expires_at: int | None = None
    livemode: bool = False


@dataclass(frozen=True)
class ReferenceKey:
    """A payable entity of a company: the unit the registry serialises checkouts on."""

    company_id: uuid.UUID
    reference: str


@dataclass(frozen=True)
class PendingAttempt:
    """A session creation that was started but not yet recorded.

    Written before Stripe is called, so a crash between Stripe's answer and the record
    loses nothing: the next request replays the same call with the same idempotency key
    (Stripe answers with the session it already made) and records the result.
    """

    idempotency_key: str
    stripe_account: str | None
    params_json: str
    started_at: int


@dataclass(frozen=True)
class SessionRecord:
    """What the registry holds for one session the service created."""

    session_id: str
    status: SessionStatus
    stripe_account: str | None
    created_at_ms: int
    ui_mode: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ReferenceState:
    """The registry's view of a reference: its sessions, the current one, any pending attempt."""

    key: ReferenceKey
    current_session_id: str | None = None
    completed_session_id: str | None = None
    pending_attempt: PendingAttempt | None = None
    sessions: tuple[SessionRecord, ...] = field(default_factory=tuple)

    def open_sessions(self) -> list[SessionRecord]:
        """Sessions the registry believes may still be payable."""
        return [s for s in self.sessions if s.status is SessionStatus.OPEN]
