"""The checkout use case: one paid-for Checkout Session per reference, never one lost.

`CheckoutService.create_checkout` validates a request against the company's settings
and catalogue, creates the new session while the reference's earlier open sessions are
expired, and records it. It talks only to the ports below; the adapters (DynamoDB,
Secrets Manager, Stripe) live in their own modules and the unit tests use fakes that
pass the same contract tests.

How the contract's invariant holds ("at most one open session per reference, the one
recorded as current, and every created session recorded"), in one Stripe and two
DynamoDB round trips on the critical path:

1. The reference is held as a unit of work (`registry.reference`): one conditional
   write takes its lease, stores this request's pending attempt (the spec and a fresh
   Stripe idempotency key) and returns the open sessions. A second request gets 409
   CheckoutInProgress; a paid or settling reference gets 409 at once.
2. The new session is created while the open ones (and any session a dead request left
   behind, replayed from its attempt) are expired, all at the same time.
3. If a prior turns out paid or settling, or could not be expired, the new session is
   expired again (compensation) and the answer is what that prior demands; otherwise
   the new session becomes current. Either way one transaction records every session,
   the current pointer and the open set, and releases the lease.
4. A crash anywhere leaves the attempt stored; the next request (or the reconciler)
   replays it with its idempotency key, so Stripe answers with the same session, which
   is then recorded and expired (`attempt_recovery`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from checkout.access import BOUND_KEYS_ONLY, AccessPolicy
from checkout.attempt_recovery import Replayed, recovered_write, replay
from checkout.contract import StripeCheckoutQueryResponse, StripeV1CreateCheckout, UiMode
from checkout.domain import (
    Article,
    ArticleKey,
    CheckoutSession,
    CheckoutSpec,
    CompanySettings,
    LineItem,
    Merchant,
    OpenSession,
    PendingAttempt,
    ReferenceKey,
    SessionRecord,
    SessionState,
)
from checkout.errors import (
    AlreadyPaid,
    CheckoutError,
    CheckoutInProgress,
    CheckoutNotConfigured,
    FieldError,
    InvalidRequest,
    LeaseLost,
    PaymentProcessing,
    StripeCredentialsUnusable,
    StripeRejected,
    TooManyCheckouts,
    UpstreamFailure,
)
from checkout.locales import checkout_locale
from checkout.observability import count, logger
from checkout.reference_transitions import Transition
from checkout.session_registry import ReferenceLease, SessionWrite
from checkout.url_policy import is_allowed, url_problem


class CompanyDirectory(Protocol):
    """Company settings and catalogue."""

    def catalogue(
        self, company_id: uuid.UUID, keys: Iterable[ArticleKey]
    ) -> tuple[CompanySettings | None, dict[ArticleKey, Article]]: ...


class PaymentGateway(Protocol):
    """Stripe Checkout Sessions, under a merchant's key and account."""

    def prefetch_key(self, merchant: Merchant) -> None: ...

    def create_session(
        self, merchant: Merchant, spec: CheckoutSpec, idempotency_key: str
    ) -> CheckoutSession: ...

    def retrieve_session(self, merchant: Merchant, session_id: str) -> CheckoutSession: ...

    def expire_session(self, merchant: Merchant, session_id: str) -> CheckoutSession: ...


class SessionRegistry(Protocol):
    """Sessions per reference, held one checkout at a time."""

    def reference(
        self, key: ReferenceKey, attempt: PendingAttempt
    ) -> AbstractContextManager[ReferenceLease]: ...

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None: ...

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None: ...


class EventRelay(Protocol):
    """Publishes the booking events a reference owes (`booking_events.OutboxRelay`)."""

    def relay(self, key: ReferenceKey) -> int: ...


def relay_quietly(relay: EventRelay, key: ReferenceKey) -> None:
    """Publish what a reference owes; if that fails the events stay owed, and the
    webhook's redelivery or the reconciler publishes them, so the caller's answer stands."""
    try:
        relay.relay(key)
    except UpstreamFailure:
        logger.warning("Booking events stay owed: publishing failed", extra={"reference": key.reference})


@dataclass(frozen=True)
class CheckoutResult:
    """The new session and what the response needs besides it."""

    session: CheckoutSession
    stripe_account: str | None
    expired_sessions: int

    def to_response(self) -> StripeCheckoutQueryResponse:
        """The contract's 200 body."""
        return StripeCheckoutQueryResponse(
            session_id=self.session.id,
            url=self.session.url,
            status=self.session.status.value,
            client_secret=self.session.client_secret,
            customer_id=self.session.customer_id,
            payment_intent_id=self.session.payment_intent_id,
            stripe_account=self.stripe_account,
        )


def _field(code: str, name: str, tail: str) -> FieldError:
    return FieldError(code, name, f"'{name}' {tail}.")


def idempotency_key(key: ReferenceKey) -> str:
    """A fresh Stripe idempotency key for one creation attempt of a reference.

    Stripe keys are at most 255 characters; the reference may be 200 of any kind, so
    it goes in as a hash, which also keeps it out of Stripe's request logs.
    """
    digest = hashlib.sha256(f"{key.company_id}\n{key.reference}".encode()).hexdigest()[:32]
    return f"checkout-{digest}-{uuid.uuid4().hex}"


class CheckoutService:
    """The StripeV1CreateCheckout use case."""

    def __init__(
        self,
        directory: CompanyDirectory,
        gateway: PaymentGateway,
        registry: SessionRegistry,
        relay: EventRelay,
        executor: Executor,
        *,
        secret_name_prefix: str,
        sessions_per_minute: int = 10,
        clock: Callable[[], float] = time.time,
        access: AccessPolicy = BOUND_KEYS_ONLY,
    ) -> None:
        self._access = access
        self._directory = directory
        self._gateway = gateway
        self._registry = registry
        self._relay = relay
        self._executor = executor
        self._secret_name_prefix = secret_name_prefix
        self._sessions_per_minute = sessions_per_minute
        self._clock = clock

    @property
    def directory(self) -> CompanyDirectory:
        """The company directory, shared with the other use cases."""
        return self._directory

    @property
    def gateway(self) -> PaymentGateway:
        """The Stripe gateway, shared with the other use cases."""
        return self._gateway

    @property
    def registry(self) -> SessionRegistry:
        """The session registry, shared with the other use cases."""
        return self._registry

    @property
    def access(self) -> AccessPolicy:
        """Which API keys may act for which company, shared with the other use cases."""
        return self._access

    def create_checkout(self, request: StripeV1CreateCheckout, *, api_key_id: str | None) -> CheckoutResult:
        """Create, record and return a new session; expire the reference's open ones.

        `api_key_id` is the caller's API Gateway key (see access.py).
        """
        if request.ui_mode is UiMode.EMBEDDED and request.cancel_url is not None:
            raise InvalidRequest(
                [_field("NotAllowed", "CancelUrl", "is not allowed when 'UiMode' is embedded")]
            )
        keys = [ArticleKey(a.article_type_id, a.article_id) for a in request.articles]
        settings, catalogue = self._directory.catalogue(request.company_id, keys)
        self._access.check(settings, api_key_id)
        if settings is None or not settings.checkout_enabled:
            raise CheckoutNotConfigured()
        # Nothing of the company's is touched before the caller's key is known to be bound
        # to it; on a cold container the key is then fetched while the lease is taken.
        self._gateway.prefetch_key(settings.merchant)
        spec = self._spec(request, settings, keys, catalogue)

        key = ReferenceKey(request.company_id, request.internal_reference_id)
        attempt = PendingAttempt.of(idempotency_key(key), spec, int(self._clock() * 1000))
        try:
            with self._registry.reference(key, attempt) as ref:
                self._check_rate(ref)
                session, expired = self._checkout(ref, settings, spec)
        except LeaseLost:
            # Our lease ran out and passed to another request, which now owns the
            # reference and will replay our attempt.
            raise CheckoutInProgress() from None
        count("SessionsCreated")
        count("SessionsExpired", expired)
        logger.info(
            "Checkout session created",
            extra={"session_id": session.id, "expired_sessions": expired, "ui_mode": spec.ui_mode.value},
        )
        return CheckoutResult(session, settings.stripe_account, expired)

    def _check_rate(self, ref: ReferenceLease) -> None:
        now_ms = int(self._clock() * 1000)
        recent = ref.creations_within(now_ms)
        if len(recent) >= self._sessions_per_minute:
            ref.release(keep_attempts=ref.stale_attempts)  # ours never reached Stripe
            retry_after = max(1, (min(recent) + 60_000 - now_ms + 999) // 1000)
            raise TooManyCheckouts(retry_after)

    # -- validation against the company -------------------------------------------------

    def _spec(
        self,
        request: StripeV1CreateCheckout,
        settings: CompanySettings,
        keys: list[ArticleKey],
        catalogue: Mapping[ArticleKey, Article],
    ) -> CheckoutSpec:
        errors: list[FieldError] = []
        confirmation = request.confirmation_url or settings.default_confirmation_url
        if confirmation is None:
            errors.append(
                _field(
                    "NotEmpty", "ConfirmationUrl", "must be set: the company has no default confirmation URL"
                )
            )
        elif request.confirmation_url is not None:
            errors.extend(self._url_errors("ConfirmationUrl", request.confirmation_url, settings))
        cancel = None
        if request.ui_mode is UiMode.HOSTED:
            cancel = request.cancel_url or settings.default_cancel_url
            if request.cancel_url is not None:
                errors.extend(self._url_errors("CancelUrl", request.cancel_url, settings))

        line_items: list[LineItem] = []
        for index, (wanted, key) in enumerate(zip(request.articles, keys, strict=True)):
            article = catalogue.get(key)
            if article is None or not article.active:
                errors.append(
                    _field(
                        "NotFound",
                        f"Articles[{index}].ArticleId",
                        f"is not in the company's catalogue for ArticleTypeId {key.article_type_id}",
                    )
                )
                continue
            line_items.append(LineItem(article.name, article.unit_amount, article.currency, wanted.quantity))
        currencies = sorted({item.currency for item in line_items})
        if len(currencies) > 1:
            errors.append(
                _field(
                    "CurrencyMismatch", "Articles", f"must share one currency, not {', '.join(currencies)}"
                )
            )
        elif line_items and not errors and sum(i.unit_amount * i.quantity for i in line_items) <= 0:
            errors.append(_field("GreaterThan", "Articles", "must add up to more than zero"))
        if errors:
            raise InvalidRequest(errors)
        assert confirmation is not None  # an error was raised above otherwise
        return CheckoutSpec(
            company_id=settings.company_id,
            reference=request.internal_reference_id,
            ui_mode=request.ui_mode,
            locale=checkout_locale(request.country_code),
            line_items=tuple(line_items),
            article_type_ids=tuple(sorted({k.article_type_id for k in keys})),
            confirmation_url=confirmation,
            cancel_url=cancel,
            stripe_account=settings.stripe_account,
        )

    @staticmethod
    def _url_errors(name: str, url: str, settings: CompanySettings) -> list[FieldError]:
        problem = url_problem(url)
        if problem is not None:
            return [_field("InvalidUrl", name, problem)]
        if not is_allowed(url, settings.allowed_url_prefixes):
            return [_field("UrlNotAllowed", name, "is not an allowed URL for this company")]
        return []

    # -- the reference-held part --------------------------------------------------------

    def _checkout(
        self, ref: ReferenceLease, settings: CompanySettings, spec: CheckoutSpec
    ) -> tuple[CheckoutSession, int]:
        assert ref.attempt is not None  # a checkout holds the reference with its own attempt
        merchant = settings.merchant
        creating = self._executor.submit(
            self._gateway.create_session, merchant, spec, ref.attempt.idempotency_key
        )
        expiring = {
            prior.session_id: self._executor.submit(
                self._gateway.expire_session,
                Merchant(settings.stripe_secret_name, prior.stripe_account),
                prior.session_id,
            )
            for prior in ref.open_sessions
        }
        replaying = [
            self._executor.submit(
                replay, self._gateway, settings.stripe_secret_name, stale, ref.current_session_id
            )
            for stale in ref.stale_attempts
        ]

        writes, still_open, news, failures, keep = self._gather(ref, expiring, replaying)
        created = _outcome(creating)
        if isinstance(created, UpstreamFailure):
            if not isinstance(created, StripeRejected | StripeCredentialsUnusable):
                keep.append(ref.attempt)  # Stripe may have acted: replay it next time
            ref.commit(writes, current_session_id=None, open_sessions=still_open, keep_attempts=keep)
            self._apply(ref, news)
            raise created

        blocker: CheckoutError | None = None
        if any(s.state is SessionState.PAID for s in news):
            blocker = AlreadyPaid()
        elif news:
            blocker = PaymentProcessing()
        elif failures:
            blocker = failures[0]
        if blocker is None:
            new = SessionWrite(
                created,
                spec.stripe_account,
                spec.ui_mode.value,
                created=True,
                created_at_ms=ref.attempt.started_at_ms,
            )
            try:
                ref.commit(
                    [*writes, new],
                    current_session_id=created.id,
                    open_sessions=[*still_open, OpenSession(created.id, spec.stripe_account)],
                    keep_attempts=keep,
                )
            except (LeaseLost, UpstreamFailure) as exc:
                self._unrecorded(ref, merchant, new, lost_lease=isinstance(exc, LeaseLost))
                raise
            return created, sum(1 for w in writes if w.session.state is SessionState.EXPIRED)

        # Compensation: a prior stands in the way, so the new session must not stay open.
        final = self._expire_new(merchant, created)
        writes.append(
            SessionWrite(
                final,
                spec.stripe_account,
                spec.ui_mode.value,
                created=True,
                created_at_ms=ref.attempt.started_at_ms,
            )
        )
        if final.state is SessionState.OPEN:
            still_open.append(OpenSession(final.id, spec.stripe_account))
        ref.commit(writes, current_session_id=None, open_sessions=still_open, keep_attempts=keep)
        self._apply(ref, news)
        raise blocker

    def _gather(
        self,
        ref: ReferenceLease,
        expiring: dict[str, Future[CheckoutSession]],
        replaying: list[Future[Replayed]],
    ) -> tuple[
        list[SessionWrite],
        list[OpenSession],
        list[CheckoutSession],
        list[UpstreamFailure],
        list[PendingAttempt],
    ]:
        """What became of the priors and the replayed attempts: the records to write, the
        sessions still open, the news for the transition function, failures, attempts to keep."""
        writes: list[SessionWrite] = []
        still_open: list[OpenSession] = []
        news: list[CheckoutSession] = []  # priors that turned out paid or settling
        failures: list[UpstreamFailure] = []
        keep: list[PendingAttempt] = []
        for prior in ref.open_sessions:
            outcome = _outcome(expiring[prior.session_id])
            if isinstance(outcome, UpstreamFailure):
                failures.append(outcome)
                still_open.append(prior)
            elif outcome.state is SessionState.EXPIRED:
                writes.append(SessionWrite(outcome, prior.stripe_account))
            else:
                news.append(outcome)
        recorded = {prior.session_id for prior in ref.open_sessions}
        for future in replaying:
            replayed = future.result()
            if replayed.failure is not None:
                failures.append(replayed.failure)
                keep.append(replayed.attempt)
            elif replayed.created is not None and replayed.created.id not in recorded:
                # (An attempt whose session is already recorded, as after a lease write that
                # landed late and re-added it, is settled by the prior's expiry above.)
                writes.append(recovered_write(replayed, still_open, news))
        return writes, still_open, news, failures, keep

    def _unrecorded(
        self, ref: ReferenceLease, merchant: Merchant, new: SessionWrite, *, lost_lease: bool
    ) -> None:
        """The new session could not be recorded: close it so it cannot be paid unseen.

        Its attempt stays on the reference, so whoever holds the reference next replays
        and records it. With the lease lost, that may already have happened, so the
        session's record is written at once as well.
        """
        logger.error("The new session could not be recorded", extra={"session_id": new.session.id})
        final = self._expire_new(merchant, new.session)
        if lost_lease:
            ref.record_unleased(SessionWrite(final, new.stripe_account, new.ui_mode, created=True))

    def _expire_new(self, merchant: Merchant, session: CheckoutSession) -> CheckoutSession:
        try:
            return self._gateway.expire_session(merchant, session.id)
        except UpstreamFailure:
            logger.warning(
                "Could not expire a session created beside a blocking prior", extra={"session_id": session.id}
            )
            return session

    def _apply(self, ref: ReferenceLease, news: list[CheckoutSession]) -> None:
        for session in news:
            self._registry.apply_news(ref.key, session)
        relay_quietly(self._relay, ref.key)


def _outcome(future: Future[CheckoutSession]) -> CheckoutSession | UpstreamFailure:
    try:
        return future.result()
    except UpstreamFailure as failure:
        return failure
