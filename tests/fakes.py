"""In-memory fakes of the use case's ports, for unit tests without AWS or HTTP.

The registry fake runs the same contract suite as the DynamoDB registry
(`tests/contract/test_session_registry.py`), so it cannot drift from the real thing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from checkout.booking_events import OwedEvent
from checkout.contract import UiMode
from checkout.domain import (
    Article,
    ArticleKey,
    CheckoutSession,
    CheckoutSpec,
    CompanySettings,
    DueRecord,
    LineItem,
    Merchant,
    OpenSession,
    PendingAttempt,
    ReferenceKey,
    ReferencePayment,
    ReferenceState,
    Refund,
    SessionRecord,
    SessionState,
    SessionStatus,
)
from checkout.errors import CheckoutInProgress, LeaseLost, StripeCredentialsUnusable
from checkout.reference_transitions import BookingEvent, Transition, event_detail, transition
from checkout.session_registry import ReferenceLease, SessionWrite, owed_session_id, record_session, refusal
from checkout.stripe_gateway import session_params

DONE_URL = "https://booking.example.com/booking/done"
HAIRCUT = LineItem("Haircut 45 min", 45000, "sek", 1)


def checkout_spec(
    company_id: uuid.UUID,
    reference: str,
    *,
    line_item: LineItem = HAIRCUT,
    confirmation_url: str = DONE_URL,
) -> CheckoutSpec:
    """A hosted checkout of one article, as the tests store attempts themselves."""
    return CheckoutSpec(
        company_id=company_id,
        reference=reference,
        ui_mode=UiMode.HOSTED,
        locale="sv",
        line_items=(line_item,),
        article_type_ids=(1,),
        confirmation_url=confirmation_url,
        cancel_url=None,
        stripe_account=None,
    )


@dataclass
class Clock:
    """A clock the test moves by hand, for leases, caches and Stripe's expiry."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeDirectory:
    """One company's settings and catalogue."""

    def __init__(self, settings: CompanySettings | None, articles: dict[ArticleKey, Article]) -> None:
        self.settings = settings
        self.articles = articles

    def catalogue(
        self, company_id: uuid.UUID, keys: Iterable[ArticleKey]
    ) -> tuple[CompanySettings | None, dict[ArticleKey, Article]]:
        return self.settings, {k: self.articles[k] for k in keys if k in self.articles}


@dataclass
class FakeStripe:
    """Sessions by id; idempotent creates; scripted failures; keys that can be rotated."""

    sessions: dict[str, CheckoutSession] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=lambda: {"checkout/stripe/x": "sk_test_current"})
    cached_keys: dict[str, str] = field(default_factory=dict)
    valid_keys: set[str] = field(default_factory=lambda: {"sk_test_current"})
    fail_create: list[Exception] = field(default_factory=list)
    fail_expire: list[Exception] = field(default_factory=list)
    fail_retrieve: dict[str, Exception] = field(default_factory=dict)  # by session id, every time
    refunds: list[tuple[str, str, str | None]] = field(default_factory=list)  # (pi, idempotency key, account)
    undelivered: list[dict[str, Any]] = field(default_factory=list)  # events, newest first
    on_create: Callable[[], None] | None = None
    calls: list[str] = field(default_factory=list)
    key_fetches: int = 0
    prefetched: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _key(self, merchant: Merchant, refresh: bool) -> str:
        if refresh or merchant.secret_name not in self.cached_keys:
            self.key_fetches += 1
            self.cached_keys[merchant.secret_name] = self.keys[merchant.secret_name]
        return self.cached_keys[merchant.secret_name]

    def _with_key(self, merchant: Merchant) -> None:
        for refresh in (False, True):
            if self._key(merchant, refresh) in self.valid_keys:
                return
        raise StripeCredentialsUnusable()

    def prefetch_key(self, merchant: Merchant) -> None:
        self.prefetched.append(merchant.secret_name)

    def create_session(self, merchant: Merchant, spec: CheckoutSpec, idempotency_key: str) -> CheckoutSession:
        self._with_key(merchant)
        with self.lock:
            self.calls.append("create")
            if self.on_create is not None:
                self.on_create()
            if self.fail_create:
                raise self.fail_create.pop(0)
            if idempotency_key in self.by_key:
                return self.sessions[self.by_key[idempotency_key]]
            params = session_params(spec)
            session = CheckoutSession(
                id=f"cs_{len(self.sessions)}",
                status=SessionStatus.OPEN,
                url="https://checkout/" if params["ui_mode"] == "hosted_page" else None,
                client_secret="cs_secret" if params["ui_mode"] == "embedded_page" else None,
            )
            self.sessions[session.id] = session
            self.params[session.id] = params
            self.by_key[idempotency_key] = session.id
            return session

    def retrieve_session(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        self._with_key(merchant)
        self.calls.append(f"retrieve {session_id}")
        if session_id in self.fail_retrieve:
            raise self.fail_retrieve[session_id]
        return self.sessions[session_id]

    def refund_payment(self, merchant: Merchant, payment_intent_id: str, idempotency_key: str) -> Refund:
        self._with_key(merchant)
        with self.lock:
            self.calls.append(f"refund {payment_intent_id}")
            if not any(pi == payment_intent_id for pi, _, _ in self.refunds):  # Stripe's own record first
                self.refunds.append((payment_intent_id, idempotency_key, merchant.stripe_account))
            return Refund(f"re_{payment_intent_id}", 45000, "sek", "succeeded")

    def undelivered_session_events(self, merchant: Merchant, since: int) -> list[dict[str, Any]]:
        self._with_key(merchant)
        return list(self.undelivered)

    def expire_session(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        self._with_key(merchant)
        with self.lock:
            self.calls.append(f"expire {session_id}")
            if self.fail_expire:
                raise self.fail_expire.pop(0)
            session = self.sessions[session_id]
            if session.status is SessionStatus.OPEN:
                session = replace(session, status=SessionStatus.EXPIRED)
                self.sessions[session_id] = session
            return session

    def pay(self, session_id: str, payment_status: str = "paid", *, failed: bool = False) -> CheckoutSession:
        """The payer pays (`unpaid`: by a delayed method; `failed`: which then failed)."""
        session = replace(
            self.sessions[session_id],
            status=SessionStatus.COMPLETE,
            payment_status=payment_status,
            payment_intent_id=f"pi_{session_id}",
            payment_failed=failed,
        )
        self.sessions[session_id] = session
        return session

    def open_ids(self) -> list[str]:
        return [s.id for s in self.sessions.values() if s.status is SessionStatus.OPEN]


@dataclass
class _Head:
    lease_owner: str | None = None
    lease_expires_at_ms: int = 0
    attempts: list[PendingAttempt] = field(default_factory=list)
    open_sessions: dict[str, OpenSession] = field(default_factory=dict)
    current_session_id: str | None = None
    payment: ReferencePayment = field(default_factory=ReferencePayment)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent_creations_ms: list[int] = field(default_factory=list)
    last_commit: str | None = None


_UNSETTLED = {SessionState.OPEN, SessionState.PROCESSING}


class InMemorySessionRegistry:
    """The DynamoDB registry's semantics in dicts, behind one lock (DynamoDB's atomicity).

    `due` mirrors the due index: (reference, session id or None for the head) -> due_at_ms.
    """

    def __init__(self, lease_seconds: int = 90, clock: Callable[[], float] | None = None) -> None:
        self._lease_ms = lease_seconds * 1000
        self._clock = clock or (lambda: 0.0)
        self._lock = threading.RLock()
        self._heads: dict[ReferenceKey, _Head] = {}
        self._records: dict[ReferenceKey, dict[str, SessionRecord]] = {}
        self._due: dict[tuple[ReferenceKey, str | None], int] = {}
        self._double_payments: set[tuple[ReferenceKey, str]] = set()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextmanager
    def reference(self, key: ReferenceKey, attempt: PendingAttempt | None = None) -> Iterator[ReferenceLease]:
        lease = self._take(key, attempt)
        try:
            yield lease
        finally:
            if not lease.committed:
                own = () if lease.attempt is None else (lease.attempt,)
                self._release(lease, (*lease.stale_attempts, *own))

    def _take(self, key: ReferenceKey, attempt: PendingAttempt | None) -> ReferenceLease:
        owner = uuid.uuid4().hex
        with self._lock:
            if attempt is None and key not in self._heads:
                raise CheckoutInProgress()
            head = self._heads.setdefault(key, _Head())
            held = head.lease_owner is not None and head.lease_expires_at_ms >= self._now_ms()
            if held and attempt is None:
                raise CheckoutInProgress()
            if held or (attempt is not None and head.payment.state.value != "payable"):
                raise refusal({"payment_state": head.payment.state.value})
            head.lease_owner = owner
            head.lease_expires_at_ms = self._now_ms() + self._lease_ms
            if attempt is not None:
                head.attempts.append(attempt)
            self._due[(key, None)] = head.lease_expires_at_ms
            own_key = None if attempt is None else attempt.idempotency_key
            return ReferenceLease(
                key=key,
                owner=owner,
                attempt=attempt,
                current_session_id=head.current_session_id,
                open_sessions=tuple(head.open_sessions[s] for s in sorted(head.open_sessions)),
                stale_attempts=tuple(a for a in head.attempts if a.idempotency_key != own_key),
                recent_creations_ms=tuple(head.recent_creations_ms),
                _registry=self,  # type: ignore[arg-type]
            )

    def _head_due(self, key: ReferenceKey, keep_attempts: Sequence[PendingAttempt]) -> None:
        if keep_attempts:
            self._due[(key, None)] = self._now_ms()
        else:
            self._due.pop((key, None), None)

    def _held(self, lease: ReferenceLease) -> _Head:
        head = self._heads[lease.key]
        if head.lease_owner != lease.owner:
            raise LeaseLost()
        return head

    def _renew(self, lease: ReferenceLease) -> None:
        with self._lock:
            head = self._held(lease)
            head.lease_expires_at_ms = self._now_ms() + self._lease_ms
            self._due[(lease.key, None)] = head.lease_expires_at_ms

    def _release(self, lease: ReferenceLease, keep_attempts: Sequence[PendingAttempt]) -> None:
        with self._lock:
            try:
                head = self._held(lease)
            except LeaseLost:
                return
            head.attempts = list(keep_attempts)
            head.lease_owner = None
            self._head_due(lease.key, keep_attempts)

    def _commit(
        self,
        lease: ReferenceLease,
        sessions: Sequence[SessionWrite],
        current_session_id: str | None,
        open_sessions: Sequence[OpenSession],
        keep_attempts: Sequence[PendingAttempt],
    ) -> None:
        with self._lock:
            if self._heads[lease.key].last_commit == lease.owner:
                return  # a retry of a commit that was applied (its answer lost)
            head = self._held(lease)
            now_ms = self._now_ms()
            for write in sessions:
                self._write(lease.key, write, now_ms)
            created = [now_ms for w in sessions if w.created and w.session.id == current_session_id]
            head.recent_creations_ms = [*lease.creations_within(now_ms), *created]
            head.open_sessions = {s.session_id: s for s in open_sessions}
            head.attempts = list(keep_attempts)
            if current_session_id is not None:
                head.current_session_id = current_session_id
            head.lease_owner = None
            head.last_commit = lease.owner
            self._head_due(lease.key, keep_attempts)

    def _record_unleased(self, key: ReferenceKey, write: SessionWrite) -> None:
        with self._lock:
            self._write(key, write, self._now_ms())

    def _write(self, key: ReferenceKey, write: SessionWrite, now_ms: int) -> None:
        records = self._records.setdefault(key, {})
        session = write.session
        old = records.get(session.id)
        if write.created or old is None:
            records[session.id] = SessionRecord(
                session_id=session.id,
                status=session.status,
                state=session.state,
                stripe_account=write.stripe_account,
                created_at_ms=write.created_at_ms or now_ms,
                ui_mode=write.ui_mode,
                payment_status=session.payment_status,
                amount_total=session.amount_total,
                currency=session.currency,
                payment_intent_id=session.payment_intent_id,
                customer_email=session.customer_email,
                livemode=session.livemode,
            )
        else:
            records[session.id] = replace(
                old, status=session.status, state=session.state, payment_status=session.payment_status
            )
        self._mark(key, session.id, session.state in _UNSETTLED, now_ms)

    def _mark(self, key: ReferenceKey, session_id: str, due: bool, now_ms: int) -> None:
        if due:
            self._due[(key, session_id)] = now_ms
        else:
            self._due.pop((key, session_id), None)
        record = self._records[key][session_id]
        self._records[key][session_id] = replace(record, due=due)

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None:
        with self._lock:
            head = self._heads.get(key)
            record = self._records.get(key, {}).get(session.id)
            if head is None or record is None:
                return None
            result = transition(
                head.payment,
                head.current_session_id,
                session.id,
                record.state,
                session.state,
                replacing_current=head.lease_owner is not None
                and head.lease_expires_at_ms >= self._now_ms()
                and bool(head.attempts),
            )
            if not result.changed:
                return result
            self._records[key][session.id] = replace(
                record,
                status=session.status,
                state=result.session_state,
                payment_status=session.payment_status,
                payment_intent_id=session.payment_intent_id or record.payment_intent_id,
                customer_email=session.customer_email or record.customer_email,
            )
            head.payment = result.payment
            if result.session_state is not SessionState.OPEN:
                head.open_sessions.pop(session.id, None)
            for event in result.events:
                head.outbox[f"{event.value}#{session.id}"] = {
                    "detail_type": event.value,
                    "detail": event_detail(event, key, session, result.payment),
                    "owed_at_ms": self._now_ms(),
                }
            if BookingEvent.DOUBLE_PAYMENT in result.events:
                self._double_payments.add((key, session.id))
            self._mark(
                key, session.id, result.session_state in _UNSETTLED or bool(result.events), self._now_ms()
            )
            return result

    def owed_events(self, key: ReferenceKey) -> list[OwedEvent]:
        with self._lock:
            outbox = self._heads[key].outbox if key in self._heads else {}
            return [
                OwedEvent(event_id, entry["detail_type"], entry["detail"], entry["owed_at_ms"])
                for event_id, entry in outbox.items()
            ]

    def settle_owed(self, key: ReferenceKey, event_ids: Sequence[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                self._heads[key].outbox.pop(event_id, None)
            for session_id in dict.fromkeys(owed_session_id(e) for e in event_ids):
                refund_published = f"{BookingEvent.REFUNDED.value}#{session_id}" in event_ids
                self._leave_due(key, session_id, double_payment_settled=refund_published)

    def finished(self, key: ReferenceKey, session_id: str) -> None:
        with self._lock:
            self._leave_due(key, session_id, double_payment_settled=True)

    def _leave_due(self, key: ReferenceKey, session_id: str, *, double_payment_settled: bool) -> None:
        record = self._records.get(key, {}).get(session_id)
        if record is None or (key, session_id) not in self._due or record.state in _UNSETTLED:
            return
        if not double_payment_settled and (key, session_id) in self._double_payments:
            return
        self._mark(key, session_id, False, 0)

    def look_again(self, key: ReferenceKey, session_id: str | None, at_ms: int) -> None:
        with self._lock:
            if (key, session_id) in self._due:
                self._due[(key, session_id)] = at_ms

    def record_refund(self, key: ReferenceKey, session_id: str, refund: Refund) -> bool:
        with self._lock:
            record = self._records.get(key, {}).get(session_id)
            if record is None or record.refund_id is not None:
                return False
            head = self._heads[key]
            event = BookingEvent.REFUNDED
            head.outbox[f"{event.value}#{session_id}"] = {
                "detail_type": event.value,
                "detail": event_detail(event, key, record_session(record), head.payment, refund),
                "owed_at_ms": self._now_ms(),
            }
            self._records[key][session_id] = replace(record, refund_id=refund.id)
            self._mark(key, session_id, True, self._now_ms())
            return True

    def due(self, before_ms: int | None = None, company_id: uuid.UUID | None = None) -> Iterator[DueRecord]:
        with self._lock:
            found = []
            for (key, session_id), due_at_ms in self._due.items():
                if (before_ms is not None and due_at_ms > before_ms) or (
                    company_id is not None and key.company_id != company_id
                ):
                    continue
                record = None if session_id is None else self._records[key][session_id]
                found.append(
                    DueRecord(
                        key,
                        due_at_ms,
                        session_id,
                        None if record is None else record.state,
                        None if record is None else record.stripe_account,
                    )
                )
        return iter(sorted(found, key=lambda r: r.due_at_ms))

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None:
        with self._lock:
            for key, records in self._records.items():
                if session_id in records:
                    return key, records[session_id]
            return None

    def load(self, key: ReferenceKey) -> ReferenceState:
        with self._lock:
            head = self._heads.get(key, _Head())
            records = sorted(
                self._records.get(key, {}).values(), key=lambda r: (r.created_at_ms, r.session_id)
            )
            return ReferenceState(
                key=key,
                payment=head.payment,
                current_session_id=head.current_session_id,
                open_sessions=tuple(head.open_sessions[s] for s in sorted(head.open_sessions)),
                pending_attempts=tuple(head.attempts),
                lease_held=head.lease_owner is not None and head.lease_expires_at_ms >= self._now_ms(),
                sessions=tuple(records),
                owed_events=tuple(sorted(head.outbox)),
            )


@dataclass
class FakePublisher:
    """Booking events as published, in order; optionally failing."""

    published: list[OwedEvent] = field(default_factory=list)
    fail: list[Exception] = field(default_factory=list)

    def publish(self, events: Sequence[OwedEvent]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.published.extend(events)

    def types(self) -> list[str]:
        return [e.detail_type for e in self.published]
