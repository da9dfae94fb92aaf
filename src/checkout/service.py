"""The checkout use case: one paid-for Checkout Session per reference, never one lost.

`CheckoutService.create_checkout` validates a request against the company's settings
and catalogue, expires the reference's earlier open sessions, creates the new session
and records it. It talks only to the ports below; the adapters (DynamoDB, Secrets
Manager, Stripe) live in their own modules and the tests use in-memory fakes.

How the contract's invariant holds ("at most one open session per reference, the one
recorded as current, and every created session recorded"):

1. The reference's registry lease serialises requests (conditional write); a second
   request gets 409 CheckoutInProgress instead of racing.
2. Before Stripe is called, the exact create parameters and a fresh idempotency key are
   stored as the reference's pending attempt. If the function dies after Stripe made the
   session but before it was recorded, the next request replays that call: Stripe
   answers with the same session, which is then recorded and expired.
3. The new session is recorded and made current in one transaction that also clears the
   pending attempt and checks the lease is still ours.
4. Prior sessions are expired before a new one is created; one that turns out to be
   complete stops the request with 409 AlreadyPaid and no new session.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from checkout.access import BOUND_KEYS_ONLY, AccessPolicy
from checkout.contract import StripeCheckoutQueryResponse, StripeV1CreateCheckout, UiMode
from checkout.domain import (
    Article,
    ArticleKey,
    CheckoutSession,
    CheckoutSpec,
    CompanySettings,
    LineItem,
    PendingAttempt,
    ReferenceKey,
    ReferenceState,
    SessionStatus,
)
from checkout.errors import (
    AlreadyPaid,
    CheckoutInProgress,
    CheckoutNotConfigured,
    FieldError,
    InvalidRequest,
    LeaseLost,
    StripeAuthRejected,
    StripeCredentialsUnusable,
    StripeRejected,
    UpstreamFailure,
)
from checkout.locales import checkout_locale
from checkout.observability import count, logger
from checkout.url_policy import is_allowed, url_problem

_MAX_PARALLEL_EXPIRIES = 8


class CompanyDirectory(Protocol):
    """Company settings and catalogue."""

    def company_settings(self, company_id: uuid.UUID) -> CompanySettings | None: ...

    def articles(self, company_id: uuid.UUID, keys: Iterable[ArticleKey]) -> dict[ArticleKey, Article]: ...


class StripeKeys(Protocol):
    """Stripe secret keys by secret name."""

    def get(self, secret_name: str, *, refresh: bool = False) -> str: ...


class PaymentGateway(Protocol):
    """Stripe Checkout Sessions."""

    def create_session(
        self, api_key: str, stripe_account: str | None, params_json: str, idempotency_key: str
    ) -> CheckoutSession: ...

    def retrieve_session(
        self, api_key: str, stripe_account: str | None, session_id: str
    ) -> CheckoutSession: ...

    def expire_session(
        self, api_key: str, stripe_account: str | None, session_id: str
    ) -> CheckoutSession: ...


class SessionRegistry(Protocol):
    """Leases and session records per reference."""

    def acquire(self, key: ReferenceKey, owner: str) -> ReferenceState: ...

    def release(self, key: ReferenceKey, owner: str) -> None: ...

    def save_attempt(self, key: ReferenceKey, owner: str, attempt: PendingAttempt) -> None: ...

    def clear_attempt(self, key: ReferenceKey, owner: str) -> None: ...

    def record_session(
        self,
        key: ReferenceKey,
        owner: str,
        session: CheckoutSession,
        stripe_account: str | None,
        ui_mode: str,
        *,
        make_current: bool,
    ) -> None: ...

    def record_orphan(
        self, key: ReferenceKey, session: CheckoutSession, stripe_account: str | None, ui_mode: str
    ) -> None: ...

    def update_status(self, key: ReferenceKey, session: CheckoutSession) -> None: ...


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
        keys: StripeKeys,
        gateway: PaymentGateway,
        registry: SessionRegistry,
        session_params: Callable[[CheckoutSpec], dict[str, Any]],
        clock: Callable[[], float] = time.time,
        access: AccessPolicy = BOUND_KEYS_ONLY,
    ) -> None:
        self._access = access
        self._directory = directory
        self._keys = keys
        self._gateway = gateway
        self._registry = registry
        self._session_params = session_params
        self._clock = clock

    def create_checkout(self, request: StripeV1CreateCheckout, *, api_key_id: str | None) -> CheckoutResult:
        """Expire the reference's open sessions and create, record and return a new one.

        `api_key_id` is the caller's API Gateway key (see access.py).
        """
        if request.ui_mode is UiMode.EMBEDDED and request.cancel_url is not None:
            raise InvalidRequest(
                [_field("NotAllowed", "CancelUrl", "is not allowed when 'UiMode' is embedded")]
            )
        settings = self._directory.company_settings(request.company_id)
        self._access.check(settings, api_key_id)
        if settings is None or not settings.checkout_enabled:
            raise CheckoutNotConfigured()
        spec = self._spec(request, settings)
        params_json = json.dumps(self._session_params(spec), sort_keys=True, separators=(",", ":"))

        key = ReferenceKey(request.company_id, request.internal_reference_id)
        owner = uuid.uuid4().hex
        state = self._registry.acquire(key, owner)
        try:
            session, expired = self._checkout_under_lease(state, owner, settings, spec, params_json)
        except LeaseLost:
            # Our lease passed to another request: it now owns the reference.
            raise CheckoutInProgress() from None
        finally:
            self._registry.release(key, owner)
        count("SessionsCreated")
        count("SessionsExpired", expired)
        logger.info(
            "Checkout session created",
            extra={"session_id": session.id, "expired_sessions": expired, "ui_mode": spec.ui_mode.value},
        )
        return CheckoutResult(session, settings.stripe_account, expired)

    # -- validation against the company -------------------------------------------------

    def _spec(self, request: StripeV1CreateCheckout, settings: CompanySettings) -> CheckoutSpec:
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

        keys = [ArticleKey(a.article_type_id, a.article_id) for a in request.articles]
        catalogue = self._directory.articles(settings.company_id, keys)
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

    # -- the registry-protected part ----------------------------------------------------

    def _checkout_under_lease(
        self,
        state: ReferenceState,
        owner: str,
        settings: CompanySettings,
        spec: CheckoutSpec,
        params_json: str,
    ) -> tuple[CheckoutSession, int]:
        if state.completed_session_id is not None:
            raise AlreadyPaid()
        prior = [(s.session_id, s.stripe_account) for s in state.open_sessions()]
        if state.pending_attempt is not None:
            recovered = self._recover(state, owner, settings)
            if recovered is not None and recovered.status is SessionStatus.OPEN:
                prior.append((recovered.id, state.pending_attempt.stripe_account))
            elif recovered is not None and recovered.status is SessionStatus.COMPLETE:
                self._registry.update_status(state.key, recovered)
                raise AlreadyPaid()

        expired = self._expire_all(state.key, settings, prior)

        attempt = PendingAttempt(
            idempotency_key=idempotency_key(state.key),
            stripe_account=spec.stripe_account,
            params_json=params_json,
            started_at=int(self._clock()),
        )
        self._registry.save_attempt(state.key, owner, attempt)
        try:
            session = self._with_key(
                settings,
                lambda api_key: self._gateway.create_session(
                    api_key, spec.stripe_account, params_json, attempt.idempotency_key
                ),
            )
        except (StripeRejected, StripeCredentialsUnusable):
            # A definite refusal created nothing, so there is nothing to replay.
            self._registry.clear_attempt(state.key, owner)
            raise
        self._record_new(state, owner, settings, spec, session)
        return session, expired

    def _record_new(
        self,
        state: ReferenceState,
        owner: str,
        settings: CompanySettings,
        spec: CheckoutSpec,
        session: CheckoutSession,
    ) -> None:
        try:
            self._registry.record_session(
                state.key, owner, session, spec.stripe_account, spec.ui_mode.value, make_current=True
            )
        except LeaseLost:
            # We outlived our lease (only possible if the lease is shorter than the
            # function timeout): another request may now own the reference, so this
            # session must neither stay open nor go unrecorded.
            logger.error("Lease lost before the new session was recorded", extra={"session_id": session.id})
            self._registry.record_orphan(state.key, session, spec.stripe_account, spec.ui_mode.value)
            final = self._expire_one(settings, session.id, spec.stripe_account)
            self._registry.update_status(state.key, final)
            raise CheckoutInProgress() from None
        except UpstreamFailure:
            # The registry is unreachable. The pending attempt still names this session,
            # so the next request will recover it; closing it now keeps it from being
            # paid in the meantime.
            try:
                self._expire_one(settings, session.id, spec.stripe_account)
            except UpstreamFailure:
                logger.warning("Could not expire an unrecorded session", extra={"session_id": session.id})
            raise

    def _recover(
        self, state: ReferenceState, owner: str, settings: CompanySettings
    ) -> CheckoutSession | None:
        attempt = state.pending_attempt
        assert attempt is not None
        logger.warning("Replaying an unfinished checkout attempt", extra={"started_at": attempt.started_at})
        try:
            session = self._with_key(
                settings,
                lambda api_key: self._gateway.create_session(
                    api_key, attempt.stripe_account, attempt.params_json, attempt.idempotency_key
                ),
            )
        except StripeRejected:
            self._registry.clear_attempt(state.key, owner)
            return None
        ui_mode = str(json.loads(attempt.params_json).get("ui_mode", ""))
        self._registry.record_session(
            state.key, owner, session, attempt.stripe_account, ui_mode, make_current=False
        )
        return session

    def _expire_one(
        self, settings: CompanySettings, session_id: str, stripe_account: str | None
    ) -> CheckoutSession:
        return self._with_key(
            settings, lambda api_key: self._gateway.expire_session(api_key, stripe_account, session_id)
        )

    def _expire_all(
        self, key: ReferenceKey, settings: CompanySettings, sessions: list[tuple[str, str | None]]
    ) -> int:
        """Expire the given sessions concurrently and record what Stripe says of each."""
        if not sessions:
            return 0
        if len(sessions) == 1:
            outcomes: list[CheckoutSession | UpstreamFailure] = [
                self._expire_or_failure(settings, *sessions[0])
            ]
        else:
            with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL_EXPIRIES, len(sessions))) as pool:
                outcomes = list(pool.map(lambda s: self._expire_or_failure(settings, *s), sessions))
        failures = [o for o in outcomes if isinstance(o, UpstreamFailure)]
        finals = [o for o in outcomes if isinstance(o, CheckoutSession)]
        for final in finals:
            self._registry.update_status(key, final)
        if failures:
            raise failures[0]
        if any(s.status is SessionStatus.COMPLETE for s in finals):
            raise AlreadyPaid()
        return sum(1 for s in finals if s.status is SessionStatus.EXPIRED)

    def _expire_or_failure(
        self, settings: CompanySettings, session_id: str, stripe_account: str | None
    ) -> CheckoutSession | UpstreamFailure:
        try:
            return self._expire_one(settings, session_id, stripe_account)
        except UpstreamFailure as failure:
            return failure

    def _with_key[T](self, settings: CompanySettings, call: Callable[[str], T]) -> T:
        """Run a Stripe call with the company's key; after a refusal, once more with a fresh key."""
        try:
            return call(self._keys.get(settings.stripe_secret_name))
        except StripeAuthRejected:
            pass
        try:
            return call(self._keys.get(settings.stripe_secret_name, refresh=True))
        except StripeAuthRejected:
            raise StripeCredentialsUnusable() from None
