"""Every call this service makes to Stripe, and the parameters it sends, in one place.

Uses the real stripe-python `StripeClient` over HTTP: against api.stripe.com in
production, against the project's Checkout emulator (`STRIPE_API_BASE`) in tests and
local runs. The API version is pinned so Stripe cannot change behaviour under us, and
network retries are switched on explicitly because `StripeClient` does not retry by
default; `StripeHttpClient` is the one retry policy for Stripe (429 included). Stripe
failures leave this module as `UpstreamFailure` (502/503/504 with Stripe's request id);
a key Stripe refuses is fetched again once (it may have been rotated) before the
failure is reported as `StripeCredentialsUnusable`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import stripe
import urllib3

from checkout.config import Config
from checkout.contract import UiMode
from checkout.domain import CheckoutSession, CheckoutSpec, Merchant, Refund, SessionStatus
from checkout.errors import StripeAuthRejected, StripeCredentialsUnusable, StripeRejected, UpstreamFailure
from checkout.observability import logger

STRIPE_API_VERSION = "2026-10-28.endive"  # the version stripe-python 16.1.0 is generated for
# The Checkout Session events this service acts on (webhook endpoints subscribe to these).
SESSION_EVENT_TYPES = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)
_EVENT_PAGES = 10
_UNDONE_REFUND = {"failed", "canceled"}  # a refund in these returned nothing

# The contract's names -> Stripe's since API 2026-03-25.dahlia; the old names are rejected.
_STRIPE_UI_MODE = {UiMode.HOSTED: "hosted_page", UiMode.EMBEDDED: "embedded_page"}


def session_params(spec: CheckoutSpec) -> dict[str, Any]:
    """The Checkout Session create parameters for a checkout, spelled out in full."""
    reference_metadata = {
        "CompanyId": str(spec.company_id),
        "InternalReferenceId": spec.reference,
        "ArticleTypeIds": ",".join(str(t) for t in spec.article_type_ids),
    }
    params: dict[str, Any] = {
        "mode": "payment",
        "ui_mode": _STRIPE_UI_MODE[spec.ui_mode],
        "line_items": [
            {
                "quantity": item.quantity,
                "price_data": {
                    "currency": item.currency,
                    "unit_amount": item.unit_amount,
                    "product_data": {"name": item.name},
                },
            }
            for item in spec.line_items
        ],
        "client_reference_id": spec.reference,
        "locale": spec.locale,
        "metadata": reference_metadata,
        # Also on the PaymentIntent, so refunds and disputes can be traced to the booking.
        "payment_intent_data": {"metadata": reference_metadata},
    }
    if spec.ui_mode is UiMode.EMBEDDED:
        params["return_url"] = spec.confirmation_url
    else:
        params["success_url"] = spec.confirmation_url
        if spec.cancel_url:
            params["cancel_url"] = spec.cancel_url
    return params


# A PaymentIntent back in one of these after its session completed: the delayed payment failed.
_FAILED_INTENT = {"requires_payment_method", "canceled"}


def session_from_stripe(obj: Any, *, payment_failed: bool = False) -> CheckoutSession:
    """A Checkout Session object (as Stripe or one of its events carries it) as the domain sees it.

    The session itself never says that a delayed payment failed (it stays complete and
    unpaid); an expanded PaymentIntent does, as does the event type `payment_failed` names.
    """
    data: Mapping[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else obj
    customer = data.get("customer")
    payment_intent = data.get("payment_intent")
    if isinstance(payment_intent, Mapping) and data.get("status") == "complete":
        payment_failed = payment_failed or (
            data.get("payment_status") == "unpaid" and payment_intent.get("status") in _FAILED_INTENT
        )
    return CheckoutSession(
        id=str(data["id"]),
        status=SessionStatus(str(data["status"])),
        url=data.get("url"),
        client_secret=data.get("client_secret"),
        customer_id=customer if isinstance(customer, str) or customer is None else customer.get("id"),
        customer_email=(data.get("customer_details") or {}).get("email"),
        payment_intent_id=(
            payment_intent
            if isinstance(payment_intent, str) or payment_intent is None
            else payment_intent.get("id")
        ),
        payment_status=data.get("payment_status"),
        amount_total=data.get("amount_total"),
        currency=data.get("currency"),
        expires_at=data.get("expires_at"),
        livemode=bool(data.get("livemode", False)),
        payment_failed=payment_failed,
    )


class StripeHttpClient(stripe.HTTPClient):
    """stripe-python's HTTP client over urllib3, with the service's one retry policy for Stripe.

    `StripeClient` retries (up to `max_network_retries`, backing off 0.5 s doubling to
    5 s, with one idempotency key per call) connection errors, 409 and 5xx, and whatever
    `Stripe-Should-Retry` says. Stripe also asks clients to back off and retry a 429
    (rate limited): that is the one addition to the policy.

    stripe-python's own `RequestsClient` goes through a requests session per thread,
    whose per-call work (hooks, cookies, proxy settings read from the environment on
    every call) was about a fifth of the service's warm CPU per checkout. urllib3,
    which the AWS client uses too, does what is needed here directly: one pool of
    keep-alive connections shared by the concurrent calls, connect and read timeouts,
    TLS checked against stripe-python's CA bundle. Proxies are not used (Lambda reaches
    Stripe directly or through a NAT). Failures are reported as `RequestsClient`
    reports them: `APIConnectionError`, retryable for timeouts and broken connections,
    not for TLS failures.
    """

    name = "urllib3"

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(verify_ssl_certs=True)
        self._pool = urllib3.PoolManager(
            maxsize=16,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        try:
            response = self._pool.request(
                method.upper(),
                url,
                body=post_data,
                headers={"Accept-Encoding": "gzip, deflate", **(headers or {})},
                redirect=False,
            )
        except urllib3.exceptions.SSLError as exc:
            raise _connection_error("Could not verify Stripe's TLS certificate", exc, retry=False) from exc
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
            raise _connection_error("Unexpected error communicating with Stripe", exc, retry=True) from exc
        except UnicodeEncodeError:
            raise  # text that cannot be sent: `_stripe_errors` answers it as a refusal
        except Exception as exc:
            # As RequestsClient: whatever else fails on the way (another urllib3 error, an
            # illegal header value) is a connection error that is not retried, named by
            # type only, as its text may hold the key.
            raise _connection_error("Unexpected error communicating with Stripe", exc, retry=False) from exc
        return response.data, response.status, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        raise NotImplementedError("the service reads no streamed Stripe answers")

    def close(self) -> None:
        self._pool.clear()

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        if (
            response is not None
            and response[1] == 429
            and num_retries < (max_network_retries or 0)
            and (response[2] or {}).get("stripe-should-retry") != "false"
        ):
            return True
        return bool(super()._should_retry(response, api_connection_error, num_retries, max_network_retries))


def _connection_error(message: str, exc: Exception, *, retry: bool) -> stripe.APIConnectionError:
    # stripe-python's error classes carry no annotations.
    error: stripe.APIConnectionError = stripe.APIConnectionError(  # type: ignore[no-untyped-call]
        f"{message} ({type(exc).__name__}).", should_retry=retry
    )
    return error


def _timed_out(exc: stripe.APIConnectionError) -> bool:
    # urllib3 counts a refused connection as a (connect) timeout; it is not one.
    cause = exc.__cause__
    return isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError
    )


@contextmanager
def _stripe_errors(operation: str) -> Iterator[None]:
    """Turn stripe-python errors into the contract's upstream failures, logging no secrets."""
    try:
        yield
    except UnicodeEncodeError:
        # Text Python holds but UTF-8 cannot (a lone surrogate) fails before anything is
        # sent: a definite refusal, so an attempt holding it is never replayed again.
        logger.error("Stripe call with text that cannot be sent", extra={"operation": operation})
        raise StripeRejected(
            "StripeRejected", "The checkout holds text that cannot be sent to Stripe."
        ) from None
    except stripe.AuthenticationError as exc:
        logger.warning(
            "Stripe refused the API key", extra={"operation": operation, "stripe_request_id": exc.request_id}
        )
        raise StripeAuthRejected() from None
    except stripe.StripeError as exc:
        request_id = exc.request_id
        logger.warning(
            "Stripe call failed",
            extra={
                "operation": operation,
                "stripe_request_id": request_id,
                "http_status": exc.http_status,
                "stripe_code": exc.code,
                "error_type": type(exc).__name__,
            },
        )
        if isinstance(exc, stripe.RateLimitError):
            raise UpstreamFailure(
                "StripeThrottled", "Stripe is rate limiting requests; please retry.", request_id
            ) from None
        if isinstance(exc, stripe.APIConnectionError):
            if _timed_out(exc):
                raise UpstreamFailure(
                    "StripeTimeout", "Stripe did not answer in time; please retry."
                ) from None
            raise UpstreamFailure("StripeUnreachable", "Stripe could not be reached; please retry.") from None
        if isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError | stripe.PermissionError):
            raise StripeRejected(
                "StripeRejected",
                f"Stripe rejected the checkout: {exc.user_message or 'invalid request'}",
                request_id,
            ) from None
        raise UpstreamFailure(
            "StripeError", "Stripe failed to process the request; please retry.", request_id
        ) from None


class StripeKeySource(Protocol):
    """Where the gateway gets a company's secret key (Secrets Manager, cached)."""

    def prefetch(self, secret_name: str) -> None: ...

    def get(self, secret_name: str, *, refresh: bool = False) -> str: ...


def _load_stripe_modules() -> None:
    """Import what stripe-python otherwise imports inside the first checkout's calls."""
    try:
        stripe.StripeClient("sk_test_preparation_only").v1.checkout.sessions  # noqa: B018 - loads the services
        importlib.import_module("stripe.checkout._session")  # the class Stripe's answer is parsed into
        importlib.import_module("stripe._object_classes")  # the table that picks it
    except Exception:  # a newer stripe-python laid out otherwise: it loads them when used, as before
        logger.warning("Could not load stripe-python's modules ahead of use", exc_info=True)


class StripeGateway:
    """Creates, expires and retrieves Checkout Sessions for any company's key and account."""

    def __init__(self, config: Config, keys: StripeKeySource) -> None:
        self._config = config
        self._keys = keys
        # stripe-python loads its client, services and the Checkout Session class on
        # first use: 30-40 ms of a cold container's first checkout. Here they load with
        # the module, in Lambda's init phase, which runs with full CPU (and before the
        # first request at all with provisioned concurrency or SnapStart).
        _load_stripe_modules()
        # One HTTP client for all companies: one pool of keep-alive TLS connections,
        # shared by the concurrent calls of a request.
        self._http = StripeHttpClient(min(3.0, config.stripe_timeout_seconds), config.stripe_timeout_seconds)
        self._clients: dict[str, stripe.StripeClient] = {}
        self._lock = threading.Lock()

    def _client(self, api_key: str) -> stripe.StripeClient:
        with self._lock:
            client = self._clients.get(api_key)
            if client is None:
                if len(self._clients) >= 64:  # a rotated key leaves its old client behind
                    self._clients.clear()
                base = {"api": self._config.stripe_api_base} if self._config.stripe_api_base else None
                client = stripe.StripeClient(
                    api_key,
                    stripe_version=STRIPE_API_VERSION,
                    max_network_retries=self._config.stripe_max_network_retries,
                    base_addresses=base,  # type: ignore[arg-type]
                    http_client=self._http,
                )
                self._clients[api_key] = client
            return client

    def prefetch_key(self, merchant: Merchant) -> None:
        """Start loading the merchant's key, so a cold request does not wait for it later."""
        self._keys.prefetch(merchant.secret_name)

    def _call[T](self, merchant: Merchant, call: Callable[[stripe.StripeClient, Any], T]) -> T:
        """Run `call` with the merchant's client and request options; once more with a
        freshly fetched key if Stripe refuses the cached one (it may have been rotated)."""
        options: dict[str, str] = {}
        if merchant.stripe_account:
            options["stripe_account"] = merchant.stripe_account
        try:
            return call(self._client(self._keys.get(merchant.secret_name)), options)
        except StripeAuthRejected:
            pass
        try:
            return call(self._client(self._keys.get(merchant.secret_name, refresh=True)), options)
        except StripeAuthRejected:
            raise StripeCredentialsUnusable() from None

    def create_session(self, merchant: Merchant, spec: CheckoutSpec, idempotency_key: str) -> CheckoutSession:
        """Create the session `spec` describes; the same key and spec give the same session."""
        params = session_params(spec)

        def create(client: stripe.StripeClient, options: Any) -> Any:
            with _stripe_errors("checkout.sessions.create"):
                return client.v1.checkout.sessions.create(
                    params=params,  # type: ignore[arg-type]
                    options={**options, "idempotency_key": idempotency_key},  # type: ignore[arg-type]
                )

        return session_from_stripe(self._call(merchant, create))

    def retrieve_session(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        """The session's current state at Stripe, with its PaymentIntent expanded (in the same
        call), which is the only place a failed delayed payment shows."""

        def retrieve(client: stripe.StripeClient, options: Any) -> Any:
            with _stripe_errors("checkout.sessions.retrieve"):
                return client.v1.checkout.sessions.retrieve(
                    session_id, params={"expand": ["payment_intent"]}, options=options
                )

        return session_from_stripe(self._call(merchant, retrieve))

    def refund_payment(self, merchant: Merchant, payment_intent_id: str, idempotency_key: str) -> Refund:
        """Refund a PaymentIntent in full, once (a duplicate payment).

        A refund the PaymentIntent already has (made by an earlier call whose answer was
        lost, even after Stripe's 24 h of idempotency, or by hand in the Dashboard) is
        returned instead of making another; the idempotency key covers a retry meanwhile.
        On Connect the refund is made on the connected account, where the charge is.
        """

        def existing(client: stripe.StripeClient, options: Any) -> Any:
            with _stripe_errors("refunds.list"):
                return client.v1.refunds.list(
                    params={"payment_intent": payment_intent_id, "limit": 100},
                    options=options,
                )

        for refund in self._call(merchant, existing).data:
            if refund["status"] not in _UNDONE_REFUND:
                return _refund(refund)

        def create(client: stripe.StripeClient, options: Any) -> Any:
            with _stripe_errors("refunds.create"):
                return client.v1.refunds.create(
                    params={"payment_intent": payment_intent_id, "reason": "duplicate"},
                    options={**options, "idempotency_key": idempotency_key},  # type: ignore[arg-type]
                )

        return _refund(self._call(merchant, create))

    def undelivered_session_events(self, merchant: Merchant, since: int) -> list[dict[str, Any]]:
        """The account's `checkout.session.*` events created since `since` (epoch seconds)
        that Stripe has not delivered to every webhook endpoint, newest first.

        At most `_EVENT_PAGES` pages: a pass that finds more than that many is about an
        endpoint that is plainly broken, which the count and the log already say.
        """
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "types": list(SESSION_EVENT_TYPES),
            "created": {"gte": since},
            "delivery_success": False,
            "limit": 100,
        }

        def page(params: dict[str, Any]) -> Any:
            def list_events(client: stripe.StripeClient, options: Any) -> Any:
                with _stripe_errors("events.list"):
                    return client.v1.events.list(params=params, options=options)  # type: ignore[arg-type]

            return self._call(merchant, list_events)

        for _ in range(_EVENT_PAGES):
            answer = page(params)
            events = [event.to_dict() for event in answer.data]
            found.extend(events)
            if not answer.has_more or not events:
                break
            params = {**params, "starting_after": events[-1]["id"]}
        return found

    def expire_session(self, merchant: Merchant, session_id: str) -> CheckoutSession:
        """Expire an open session and return its final state.

        A payer may complete the session just before we expire it, and Stripe then
        refuses the expiry; the session is retrieved and its real status returned, so the
        caller can tell "expired" (harmless) from "complete" (paid or settling).
        """

        def expire(client: stripe.StripeClient, options: Any) -> Any:
            with _stripe_errors("checkout.sessions.expire"):
                return client.v1.checkout.sessions.expire(session_id, options=options)

        try:
            return session_from_stripe(self._call(merchant, expire))
        except StripeRejected:
            session = self.retrieve_session(merchant, session_id)
            if session.status is SessionStatus.OPEN:
                raise
            return session


def _refund(obj: Any) -> Refund:
    data: Mapping[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return Refund(str(data["id"]), int(data["amount"]), str(data["currency"]), str(data["status"]))
