"""Plain value types the use cases work with, free of HTTP, boto3 and stripe."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from checkout.contract import UiMode


class SessionStatus(StrEnum):
    """A Checkout Session's `status`, as Stripe names it."""

    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class SessionState(StrEnum):
    """What a Checkout Session means for its reference (ours; derived from Stripe's fields).

    Stripe's `status` alone cannot tell a paid session from one whose delayed payment
    (SEPA debit, bank transfer) is still settling or has failed; this can.
    """

    OPEN = "open"
    EXPIRED = "expired"
    PROCESSING = "processing"  # complete, payment_status unpaid: a delayed method settles later
    PAID = "paid"  # complete, payment_status paid or no_payment_required
    FAILED = "failed"  # complete, but the delayed payment failed


class PaymentState(StrEnum):
    """Where a reference stands: can it be paid, is a payment settling, is it paid."""

    PAYABLE = "payable"
    PROCESSING = "processing"
    PAID = "paid"


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
    # Refund a second payment of a reference in full (the reconciler does it).
    refund_duplicate_payments: bool = False
    # The API Gateway key ids that may act for the company (see access.py).
    api_key_ids: frozenset[str] = frozenset()

    @property
    def merchant(self) -> Merchant:
        """The Stripe identity the company's sessions are created under."""
        return Merchant(self.stripe_secret_name, self.stripe_account)


@dataclass(frozen=True)
class Merchant:
    """Whose Stripe account a call acts on: the secret holding the key, and a Connect account."""

    secret_name: str
    stripe_account: str | None = None


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
    customer_email: str | None = None
    payment_intent_id: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    expires_at: int | None = None
    livemode: bool = False
    # Stripe's session does not say that a delayed payment failed (it stays complete and
    # unpaid); the webhook event type or the PaymentIntent does.
    payment_failed: bool = False

    @property
    def state(self) -> SessionState:
        """What the session means for its reference."""
        if self.status is SessionStatus.OPEN:
            return SessionState.OPEN
        if self.status is SessionStatus.EXPIRED:
            return SessionState.EXPIRED
        if self.payment_status in {"paid", "no_payment_required"}:
            return SessionState.PAID
        return SessionState.FAILED if self.payment_failed else SessionState.PROCESSING


@dataclass(frozen=True)
class ReferenceKey:
    """A payable entity of a company: the unit the registry serialises checkouts on."""

    company_id: uuid.UUID
    reference: str


@dataclass(frozen=True)
class PendingAttempt:
    """A session creation that was started but not yet recorded.

    Written before Stripe is called, so a crash between Stripe's answer and the record
    loses nothing: a later request replays the same call with the same idempotency key
    (Stripe answers with the session it already made) and records the result.
    """

    idempotency_key: str
    spec_json: str  # the CheckoutSpec, as stored; see `of` and `spec`
    started_at_ms: int

    @classmethod
    def of(cls, idempotency_key: str, spec: CheckoutSpec, started_at_ms: int) -> PendingAttempt:
        """The attempt to create the session `spec` describes."""
        text = json.dumps(asdict(spec), default=str, sort_keys=True, separators=(",", ":"))
        return cls(idempotency_key, text, started_at_ms)

    def spec(self) -> CheckoutSpec:
        """The spec to replay; `ValueError` when the stored text cannot be read back."""
        try:
            raw = json.loads(self.spec_json)
            return CheckoutSpec(
                company_id=uuid.UUID(raw["company_id"]),
                reference=str(raw["reference"]),
                ui_mode=UiMode(raw["ui_mode"]),
                locale=str(raw["locale"]),
                line_items=tuple(LineItem(**item) for item in raw["line_items"]),
                article_type_ids=tuple(int(t) for t in raw["article_type_ids"]),
                confirmation_url=str(raw["confirmation_url"]),
                cancel_url=raw.get("cancel_url"),
                stripe_account=raw.get("stripe_account"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"unreadable pending attempt: {exc}") from None


@dataclass(frozen=True)
class ReferencePayment:
    """The payment side of a reference: the one thing the transition function changes."""

    state: PaymentState = PaymentState.PAYABLE
    paid_session_id: str | None = None
    processing_session_id: str | None = None
    # Sessions paid after another one had already paid the reference (double payments).
    extra_paid_session_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenSession:
    """A session the registry believes may still be payable (kept on the reference's head)."""

    session_id: str
    stripe_account: str | None


@dataclass(frozen=True)
class SessionRecord:
    """What the registry holds for one session the service created."""

    session_id: str
    status: SessionStatus
    state: SessionState
    stripe_account: str | None
    created_at_ms: int
    ui_mode: str | None = None
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    payment_intent_id: str | None = None
    customer_email: str | None = None
    livemode: bool = False
    refund_id: str | None = None  # the refund of a double payment, once made
    due: bool = False  # in the reconciler's due index (see dynamodb_layout)


@dataclass(frozen=True)
class Refund:
    """A refund at Stripe."""

    id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True)
class DueRecord:
    """An entry of the reconciler's due index: a reference's head, or one of its sessions."""

    key: ReferenceKey
    due_at_ms: int
    session_id: str | None = None  # None: the head (pending attempts)
    state: SessionState | None = None  # the session's state as the index last saw it
    stripe_account: str | None = None


@dataclass(frozen=True)
class ReferenceState:
    """The registry's whole view of a reference (operators, status answers)."""

    key: ReferenceKey
    payment: ReferencePayment = field(default_factory=ReferencePayment)
    current_session_id: str | None = None
    open_sessions: tuple[OpenSession, ...] = ()
    pending_attempts: tuple[PendingAttempt, ...] = ()
    lease_held: bool = False
    sessions: tuple[SessionRecord, ...] = ()
    owed_events: tuple[str, ...] = ()  # ids of booking events recorded but not yet published
