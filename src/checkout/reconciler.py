"""The reconciler: nothing the registry holds stays wrong for long.

Webhooks get lost, a function can die between Stripe creating a session and the registry
recording it, and a payer can pay a superseded session. A pass, every few minutes on a
schedule or on demand (`checkout-admin reconcile`), repairs what that leaves, through the
same code the other entry points use:

1. The due index (`dynamodb_layout`) lists what may need repair, oldest first: open and
   settling sessions, sessions owing booking events or a refund, references holding
   attempts. Only records older than the grace period are due, so a pass does not race
   a live checkout or a webhook on its way. Each reference found is repaired as a whole:
   - attempts that dead requests left are finished under the reference's lease
     (`attempt_recovery`, as the next checkout would): replayed with their idempotency
     key, recorded, expired unless current. A reference held by a live checkout is skipped
     this pass;
   - every session it holds as open or settling is retrieved from Stripe, with the
     PaymentIntent where a failed delayed payment shows, and what Stripe says goes
     through `registry.apply_news`, the one transition function. An open session nobody
     should pay (not the current one, or its reference is paid or settling) is expired
     first;
   - a double payment (decided by the transition) is refunded in full when the company
     has it switched on, and the refund recorded, owing "Checkout Refunded";
   - the booking events the reference owes are published.
   A session still open is looked at again after as long again as its age (at most an
   hour), so a pass does not ask Stripe about every open session every run.
2. For companies with unsettled sessions and a registered webhook endpoint, Stripe's
   undelivered `checkout.session.*` events of the last three days are applied as the
   webhook would have applied them. Only events about sessions the index holds as
   unsettled are applied: states only move forward, so an event about any other session
   can change nothing, and skipping it costs no read.

A pass stops starting work when less than `_RESERVE_SECONDS` remain and reports that
more remains; what it did is recorded and the rest is still due, so the next pass goes
on. It is idempotent: a second pass finds nothing due, or finds Stripe's answer recorded.

Refunds are made here, never by the webhook function: that function holds no Stripe keys
and must answer Stripe within seconds, while a refund can wait for the next pass; and
one place that refunds, keyed per session and recorded on it, is what keeps "never
twice" true.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from checkout.attempt_recovery import SessionMaker, recovered_write, replay
from checkout.booking_events import OutboxRelay
from checkout.domain import (
    CheckoutSession,
    CompanySettings,
    DueRecord,
    Merchant,
    OpenSession,
    PaymentState,
    PendingAttempt,
    ReferenceKey,
    ReferenceState,
    Refund,
    SessionRecord,
    SessionState,
)
from checkout.errors import (
    CheckoutError,
    CheckoutInProgress,
    CheckoutNotConfigured,
    LeaseLost,
    UpstreamFailure,
)
from checkout.observability import count, logger
from checkout.reference_transitions import Transition, refundable
from checkout.service import CompanyDirectory
from checkout.session_registry import ReferenceLease, SessionWrite
from checkout.stripe_webhooks import CONNECT, Outcome, apply_session_event

_UNSETTLED = {SessionState.OPEN, SessionState.PROCESSING}
# Stop starting work with this much time left: one Stripe call with its retries
# (3 attempts of STRIPE_TIMEOUT_SECONDS, 8 s, plus backoff) must still fit.
_RESERVE_SECONDS = 30.0
_LOOK_AGAIN_MIN_MS = 60_000
_LOOK_AGAIN_MAX_MS = 3_600_000
# Stripe retries a webhook for three days; an event older than that will not come.
_EVENT_WINDOW_SECONDS = 3 * 24 * 3600


class ReconcileGateway(SessionMaker, Protocol):
    """The Stripe calls a pass makes (`stripe_gateway.StripeGateway`)."""

    def retrieve_session(self, merchant: Merchant, session_id: str) -> CheckoutSession: ...

    def refund_payment(self, merchant: Merchant, payment_intent_id: str, idempotency_key: str) -> Refund: ...

    def undelivered_session_events(self, merchant: Merchant, since: int) -> list[dict[str, Any]]: ...


class ReconcileRegistry(Protocol):
    """The session registry, as a pass uses it."""

    def due(
        self, before_ms: int | None = None, company_id: uuid.UUID | None = None
    ) -> Iterator[DueRecord]: ...

    def load(self, key: ReferenceKey) -> ReferenceState: ...

    def reference(
        self, key: ReferenceKey, attempt: PendingAttempt | None = None
    ) -> AbstractContextManager[ReferenceLease]: ...

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None: ...

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None: ...

    def record_refund(self, key: ReferenceKey, session_id: str, refund: Refund) -> bool: ...

    def look_again(self, key: ReferenceKey, session_id: str | None, at_ms: int) -> None: ...

    def finished(self, key: ReferenceKey, session_id: str) -> None: ...


class Endpoints(Protocol):
    """Which webhook endpoints are registered (`stripe_webhooks.WebhookEndpoints`)."""

    def registered(self, scope: str) -> bool: ...


@dataclass(frozen=True)
class Repair:
    """One thing a pass changed."""

    company_id: str
    reference: str
    what: str
    session_id: str | None = None


@dataclass
class ReconcileReport:
    """What a pass did: its repairs, and what it looked at, skipped or failed on."""

    repairs: list[Repair] = field(default_factory=list)
    references_checked: int = 0
    sessions_checked: int = 0
    webhook_events_undelivered: int = 0
    skipped: int = 0  # references a live checkout held: their attempts wait for the next pass
    failed: int = 0
    more_remains: bool = False

    @property
    def repaired(self) -> int:
        """How many repairs (the `ReconcileRepaired` metric)."""
        return len(self.repairs)

    def add(self, key: ReferenceKey, what: str, session_id: str | None = None) -> None:
        """Note a repair, and log it."""
        repair = Repair(str(key.company_id), key.reference, what, session_id)
        self.repairs.append(repair)
        logger.info("Reconciler repaired", extra=asdict(repair))

    def to_dict(self) -> dict[str, Any]:
        """The report as `checkout-admin reconcile` prints it and the function returns it."""
        return {
            "repaired": self.repaired,
            "failed": self.failed,
            "skipped": self.skipped,
            "more_remains": self.more_remains,
            "references_checked": self.references_checked,
            "sessions_checked": self.sessions_checked,
            "webhook_events_undelivered": self.webhook_events_undelivered,
            "repairs": [asdict(r) for r in self.repairs],
        }


class _OutOfTime(Exception):
    """Too little time is left to start another step."""


@dataclass(frozen=True)
class _Budget:
    seconds_left: Callable[[], float]

    def check(self) -> None:
        if self.seconds_left() < _RESERVE_SECONDS:
            raise _OutOfTime()


class Reconciler:
    """Repairs what the registry holds from what Stripe knows; see the module docstring."""

    def __init__(
        self,
        directory: CompanyDirectory,
        gateway: ReconcileGateway,
        registry: ReconcileRegistry,
        relay: OutboxRelay,
        endpoints: Endpoints,
        *,
        grace_minutes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._gateway = gateway
        self._registry = registry
        self._relay = relay
        self._endpoints = endpoints
        self._grace_ms = grace_minutes * 60_000
        self._clock = clock

    def run(
        self, company_id: uuid.UUID | None = None, seconds_left: Callable[[], float] = lambda: math.inf
    ) -> ReconcileReport:
        """One pass over what is due (of one company, or all), then undelivered webhook events."""
        report = ReconcileReport()
        budget = _Budget(seconds_left)
        try:
            # Each phase reads the due index first; if AWS fails it there, the phase is
            # counted as failed and the other still runs: the next pass tries again.
            try:
                seen: set[ReferenceKey] = set()
                for record in self._registry.due(self._now_ms() - self._grace_ms, company_id):
                    if record.key not in seen:
                        seen.add(record.key)
                        budget.check()
                        self._repair_safely(record.key, report, budget)
            except CheckoutError as exc:
                _phase_failed("repair what is due", exc, report)
            try:
                self._sweep_events(company_id, report, budget)
            except CheckoutError as exc:
                _phase_failed("sweep undelivered events", exc, report)
        except _OutOfTime:
            report.more_remains = True
            logger.info("Reconcile pass stopped for time; the next pass goes on")
        _publish_metrics(report)
        return report

    def reconcile_reference(self, key: ReferenceKey) -> ReconcileReport:
        """Repair one reference now, due or not (an operator asked by name)."""
        report = ReconcileReport()
        self._repair_safely(key, report, _Budget(lambda: math.inf))
        _publish_metrics(report)
        return report

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _repair_safely(self, key: ReferenceKey, report: ReconcileReport, budget: _Budget) -> None:
        """Repair one reference; a failure is counted and logged, and the pass goes on."""
        report.references_checked += 1
        try:
            self._repair(key, report, budget)
        except _OutOfTime:
            raise
        except CheckoutError as exc:
            report.failed += 1
            logger.warning(
                "Reconciler could not repair a reference",
                extra={"reference": key.reference, "error_code": exc.error_code, "error": exc.message},
            )
            self._behind_the_queue(key)
        except Exception:
            # A bug must not stop the pass for every other reference; the trace is logged.
            report.failed += 1
            logger.exception("Reconciler failed on a reference", extra={"reference": key.reference})
            self._behind_the_queue(key)

    def _behind_the_queue(self, key: ReferenceKey) -> None:
        """Move a reference that failed behind everything already due, so a broken one
        does not take every pass's time, and it is tried again next pass."""
        now_ms = self._now_ms()
        try:
            state = self._registry.load(key)
            for record in state.sessions:
                if record.due:
                    self._registry.look_again(key, record.session_id, now_ms)
            if state.pending_attempts:
                self._registry.look_again(key, None, now_ms)
        except UpstreamFailure:
            pass  # it stays where it was in the index

    def _repair(self, key: ReferenceKey, report: ReconcileReport, budget: _Budget) -> None:
        state = self._registry.load(key)
        settings = self._settings(key)
        if state.pending_attempts:
            if state.lease_held:
                report.skipped += 1
            elif self._finish_attempts(key, state, settings, report, budget):
                state = self._registry.load(key)
        changed = [s.session_id for s in self._learn(key, state, settings, report, budget)]
        if changed:
            state = self._registry.load(key)
        self._refund(key, state, settings, report, budget)
        published = self._relay.relay(key)
        if published:
            report.add(key, f"published {published} booking event(s)")
        for record in state.sessions:
            if (record.due or record.session_id in changed) and self._done_with(record, state, settings):
                self._registry.finished(key, record.session_id)

    def _settings(self, key: ReferenceKey) -> CompanySettings:
        settings, _ = self._directory.catalogue(key.company_id, ())
        if settings is None:
            raise CheckoutNotConfigured()  # its records wait (and fail) until it is onboarded again
        return settings

    # -- attempts dead requests left -----------------------------------------------------

    def _finish_attempts(
        self,
        key: ReferenceKey,
        state: ReferenceState,
        settings: CompanySettings,
        report: ReconcileReport,
        budget: _Budget,
    ) -> bool:
        """Finish the reference's pending attempts under its lease; False when it is held."""
        recorded = {s.session_id for s in state.sessions}
        news: list[CheckoutSession] = []
        done: list[tuple[str, str | None]] = []  # reported once committed
        failure: UpstreamFailure | None = None
        try:
            with self._registry.reference(key) as ref:
                writes: list[SessionWrite] = []
                still_open: list[OpenSession] = list(ref.open_sessions)
                keep: list[PendingAttempt] = []
                for attempt in ref.stale_attempts:
                    budget.check()  # out of time: the lease is given back, the attempts kept
                    replayed = replay(
                        self._gateway, settings.stripe_secret_name, attempt, ref.current_session_id
                    )
                    if replayed.failure is not None:
                        failure = replayed.failure
                        keep.append(attempt)
                    elif replayed.created is not None and replayed.created.id in recorded:
                        # Recorded already (by a request that lost its lease): that record
                        # stands, and what the replay learned goes through the transition.
                        news.extend([] if replayed.final is None else [replayed.final])
                        done.append(("finished an attempt whose session was recorded", replayed.created.id))
                    elif replayed.created is not None:
                        writes.append(recovered_write(replayed, still_open, news))
                        done.append(("recorded a session a dead request created", replayed.created.id))
                    else:
                        done.append(("dropped an attempt that created nothing", None))
                ref.commit(writes, current_session_id=None, open_sessions=still_open, keep_attempts=keep)
        except (CheckoutInProgress, LeaseLost):
            report.skipped += 1  # a live checkout holds it, and replays the attempts itself
            return False
        for what, session_id in done:
            report.add(key, what, session_id)
        for session in news:
            self._registry.apply_news(key, session)
        if failure is not None:
            raise failure  # after recording what could be recorded
        return True

    # -- sessions the registry holds as open or settling -----------------------------------

    def _learn(
        self,
        key: ReferenceKey,
        state: ReferenceState,
        settings: CompanySettings,
        report: ReconcileReport,
        budget: _Budget,
    ) -> Iterable[SessionRecord]:
        """Ask Stripe about every unsettled session and apply what it says; the records changed."""
        changed: list[SessionRecord] = []
        for record in state.sessions:
            if record.state not in _UNSETTLED:
                continue
            budget.check()
            merchant = Merchant(settings.stripe_secret_name, record.stripe_account)
            session = self._gateway.retrieve_session(merchant, record.session_id)
            report.sessions_checked += 1
            if session.state is SessionState.OPEN and not _may_stay_open(state, record.session_id):
                session = self._gateway.expire_session(merchant, record.session_id)
                if session.state is SessionState.EXPIRED:
                    report.add(key, "expired a session that should not be payable", record.session_id)
            result = self._registry.apply_news(key, session)
            if result is not None and result.changed:
                changed.append(record)
                report.add(key, f"recorded it {result.session_state.value}", record.session_id)
            if session.state in _UNSETTLED:
                self._registry.look_again(key, record.session_id, self._next_look(record.created_at_ms))
        return changed

    def _next_look(self, created_at_ms: int) -> int:
        now_ms = self._now_ms()
        return now_ms + min(max(now_ms - created_at_ms, _LOOK_AGAIN_MIN_MS), _LOOK_AGAIN_MAX_MS)

    # -- double payments ---------------------------------------------------------------------

    def _refund(
        self,
        key: ReferenceKey,
        state: ReferenceState,
        settings: CompanySettings,
        report: ReconcileReport,
        budget: _Budget,
    ) -> None:
        """Refund each double payment not yet refunded, when the company wants it."""
        if not settings.refund_duplicate_payments:
            return
        records = {s.session_id: s for s in state.sessions}
        for session_id in state.payment.extra_paid_session_ids:
            record = records.get(session_id)
            if record is None or record.refund_id is not None or not refundable(state.payment, session_id):
                continue
            budget.check()
            merchant = Merchant(settings.stripe_secret_name, record.stripe_account)
            payment_intent = record.payment_intent_id
            if payment_intent is None:
                payment_intent = self._gateway.retrieve_session(merchant, session_id).payment_intent_id
            if payment_intent is None:
                raise UpstreamFailure(
                    "StripeError", f"Stripe shows no payment for the paid session {session_id}."
                )
            refund = self._gateway.refund_payment(merchant, payment_intent, f"refund-{session_id}")
            if self._registry.record_refund(key, session_id, refund):
                report.add(
                    key, f"refunded the double payment ({refund.amount} {refund.currency})", session_id
                )

    @staticmethod
    def _done_with(record: SessionRecord, state: ReferenceState, settings: CompanySettings) -> bool:
        """Whether a session needs nothing more from the reconciler (its events are published)."""
        if record.state in _UNSETTLED:
            return False
        refund_pending = settings.refund_duplicate_payments and record.refund_id is None
        return not (refund_pending and refundable(state.payment, record.session_id))

    # -- webhook events Stripe could not deliver ----------------------------------------------

    def _sweep_events(self, company_id: uuid.UUID | None, report: ReconcileReport, budget: _Budget) -> None:
        unsettled = {
            r.session_id: r
            for r in self._registry.due(None, company_id)
            if r.session_id is not None and r.state in _UNSETTLED
        }
        accounts: dict[uuid.UUID, set[str | None]] = {}
        for record in unsettled.values():
            accounts.setdefault(record.key.company_id, set()).add(record.stripe_account)
        since = int(self._clock()) - _EVENT_WINDOW_SECONDS
        companies = list(accounts)
        random.shuffle(companies)  # a pass cut short by time does not always favour the same ones
        for company in companies:
            budget.check()
            settings, _ = self._directory.catalogue(company, ())
            if settings is None:
                continue
            for account in sorted(accounts[company], key=lambda a: a or ""):
                scope = CONNECT if account else str(company)
                if not self._endpoints.registered(scope):
                    continue
                try:
                    events = self._gateway.undelivered_session_events(
                        Merchant(settings.stripe_secret_name, account), since
                    )
                except UpstreamFailure as exc:
                    report.failed += 1
                    logger.warning(
                        "Reconciler could not list undelivered events", extra={"error_code": exc.error_code}
                    )
                    continue
                report.webhook_events_undelivered += len(events)
                if events:
                    logger.warning(
                        "Stripe could not deliver webhook events; check the endpoint and its signing secret",
                        extra={"company_id": str(company), "scope": scope, "events": len(events)},
                    )
                for event in reversed(events):  # oldest first, as they happened
                    self._apply_event(scope, event, unsettled, report, budget)

    def _apply_event(
        self,
        scope: str,
        event: dict[str, Any],
        unsettled: dict[str, DueRecord],
        report: ReconcileReport,
        budget: _Budget,
    ) -> None:
        session_id = str(((event.get("data") or {}).get("object") or {}).get("id", ""))
        record = unsettled.get(session_id)
        if record is None:
            return
        budget.check()
        try:
            outcome = apply_session_event(self._registry, self._relay, scope, event)
        except CheckoutError as exc:
            report.failed += 1
            logger.warning("Reconciler could not apply an event", extra={"error_code": exc.error_code})
            return
        if outcome is Outcome.APPLIED:
            report.add(record.key, f"applied the undelivered {event.get('type')}", session_id)


def _may_stay_open(state: ReferenceState, session_id: str) -> bool:
    """Only the current session of a reference that can still be paid may be open."""
    return session_id == state.current_session_id and state.payment.state is PaymentState.PAYABLE


def _phase_failed(phase: str, exc: CheckoutError, report: ReconcileReport) -> None:
    report.failed += 1
    extra = {"phase": phase, "error_code": exc.error_code, "error": exc.message}
    logger.warning("Reconciler could not finish a phase of its pass", extra=extra)


def _publish_metrics(report: ReconcileReport) -> None:
    count("ReconcileRepaired", report.repaired)
    count("ReconcileFailed", report.failed)
    count("WebhookEventsUndelivered", report.webhook_events_undelivered)
    logger.info("Reconcile pass done", extra={k: v for k, v in report.to_dict().items() if k != "repairs"})
