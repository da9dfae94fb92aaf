"""A strict, stateful emulator of the parts of Stripe the checkout service uses, for tests and local runs.

Stripe's own stripe-mock is stateless and not installable here, so this module serves
these endpoints over real HTTP to the real stripe-python client (pointed here with
`base_addresses={"api": url}`):

    POST   /v1/checkout/sessions                  create (form-encoded, nested params)
    GET    /v1/checkout/sessions/{id}             retrieve (expand[]: line_items, payment_intent)
    GET    /v1/checkout/sessions                  list (Stripe's filters only)
    GET    /v1/checkout/sessions/{id}/line_items  the session's line items
    POST   /v1/checkout/sessions/{id}/expire      expire (open sessions only)
    GET    /v1/payment_intents/{id}               a paid session's PaymentIntent
    POST   /v1/refunds                            refund a PaymentIntent, in full or in part
    GET    /v1/refunds, /v1/refunds/{id}          list (by payment_intent), retrieve
    GET    /v1/events, /v1/events/{id}            events (type, types[], created, delivery_success)
    POST   /v1/webhook_endpoints                  create (the answer holds the whsec_ secret)
    GET    /v1/webhook_endpoints                  list
    GET/POST/DELETE /v1/webhook_endpoints/{id}    retrieve, update, delete

and, for the payer, the pages a browser opens:

    GET/POST /c/pay/{id}                          the hosted Checkout page (a session's `url`)
    GET/POST /c/embedded/{id}?client_secret=...   the page embedded Checkout shows in its iframe
    GET      /v3/  (and /v3/stripe.js)            a stand-in for Stripe.js: Stripe(pk).initEmbeddedCheckout

It is strict on purpose: unknown parameters, retired names (`ui_mode=hosted`,
`payment_method_types`), forbidden combinations (`cancel_url` with `embedded_page`) and
limits (100 line items, metadata sizes) are Stripe-shaped 400s, so a bug real Stripe
would catch is caught here too. It checks the API key and pins the API version, keeps
objects per `Stripe-Account`, and treats idempotency keys as Stripe does (same key and
parameters: the saved answer again; other parameters: 400 `idempotency_error`).

Payments happen the way Stripe reports them: each change is an Event (as listed by
/v1/events), POSTed, signed with the endpoint's secret, to every subscribed webhook
endpoint by a background thread that retries failures (see emulator_webhooks). Connect
works as with Stripe: an endpoint made with `Stripe-Account` gets that account's events,
a platform endpoint with `connect=true` gets every connected account's (with `account`).

Tests drive it through Python: `complete` (card, or a delayed bank debit), `settle`,
`expire`, `deliver`, `pause_deliveries`/`resume_deliveries`, `wait_for_deliveries`,
`inject_fault`, `revoke_key`, and read it back with `sessions`, `line_items`, `events`,
`deliveries`, `webhook_endpoints`, `refunds`, `requests`. The benchmark gives every API
call a standing latency (`latency=`, a floor per call) and records it in a `CallLog`.
Not shipped in the Lambda package.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from localdev import emulator_pages as pages
from localdev.emulator_events import Events
from localdev.emulator_webhooks import DEFAULT_RETRY_DELAYS
from localdev.emulator_wire import (
    API_VERSION,
    ApiCall,
    StripeApiError,
    boolean,
    check_metadata,
    check_schema,
    created_filter,
    decode_form,
    expand_paths,
    integer,
    invalid,
    list_page,
    missing,
    new_id,
    only,
    public,
    text,
    url,
)
from localdev.remote_calls import STRIPE, CallLog, hold_until

UI_MODES = {"hosted_page", "embedded_page", "elements", "form"}
LOCALES = {"auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr",
           "fr-CA", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt",
           "pt-BR", "ro", "ru", "sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW"}  # fmt: skip
CURRENCIES = set(
    ["sek", "nok", "dkk", "eur", "gbp", "usd", "chf", "pln", "czk", "huf", "isk", "jpy", "cad", "aud", "nzd"]
)
MAX_LINE_ITEMS = 100


# Which parameters the emulator knows, as Stripe nests them (see check_schema).
_PRODUCT_DATA = {"name": None, "description": None, "images": None, "metadata": "metadata", "tax_code": None}
_PRICE_DATA = {
    "currency": None,
    "unit_amount": None,
    "product_data": _PRODUCT_DATA,
    "product": None,
    "tax_behavior": None,
}
_LINE_ITEM = {"price": None, "price_data": _PRICE_DATA, "quantity": None}
_PAYMENT_INTENT_DATA = {
    "metadata": "metadata",
    "application_fee_amount": None,
    "description": None,
    "statement_descriptor": None,
    "statement_descriptor_suffix": None,
    "capture_method": None,
    "receipt_email": None,
    "on_behalf_of": None,
}
CREATE_SCHEMA: dict[str, Any] = {
    "mode": None,
    "ui_mode": None,
    "line_items": [_LINE_ITEM],
    "success_url": None,
    "cancel_url": None,
    "return_url": None,
    "redirect_on_completion": None,
    "client_reference_id": None,
    "locale": None,
    "metadata": "metadata",
    "payment_intent_data": _PAYMENT_INTENT_DATA,
    "customer": None,
    "customer_email": None,
    "customer_creation": None,
    "expires_at": None,
    "allowed_payment_method_types": None,
    "excluded_payment_method_types": None,
    "submit_type": None,
    "billing_address_collection": None,
    "allow_promotion_codes": None,
    "expand": None,
}
LIST_FILTERS = {"created", "customer", "customer_details", "payment_intent", "payment_link", "status",
                "subscription", "limit", "starting_after", "ending_before", "expand"}  # fmt: skip
PAGE_PARAMS = {"limit", "starting_after", "ending_before", "expand"}
# What a Checkout Session can expand; the last five stay as they are (null or an id here).
SESSION_EXPANDABLE = {"line_items", "payment_intent", "customer", "invoice", "payment_link", "setup_intent",
                      "subscription"}  # fmt: skip
REDIRECT_ON_COMPLETION = {"always", "if_required", "never"}
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    after: bool
    delay: float
    reset: bool = False


class ConnectionReset(Exception):
    """The emulator closes the connection without answering (an injected fault)."""


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class RecordedRequest:
    """A request as the emulator saw it, for assertions in tests."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int = 0


@dataclass
class _State:
    # Every object is kept per account: "" for the platform, else the Stripe-Account.
    sessions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (account, id) -> session
    payment_intents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refunds: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str, str], _Stored] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    revoked_keys: set[str] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)


Handler = Callable[[ApiCall], dict[str, Any]]


class StripeEmulator:
    """The emulator's state and HTTP server; `start()` serves it on 127.0.0.1.

    `clock` is Stripe's clock (creation times, expiry); `retry_delays` are the seconds
    between a failed webhook delivery and its retries; `delivery_timeout` is how long a
    webhook endpoint may take to answer; every `expiry_check_interval` seconds sessions
    whose `expires_at` passed are expired (and announced), as Stripe does on its own.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        delivery_timeout: float = 5.0,
        expiry_check_interval: float = 1.0,
        latency: float = 0.0,
        calls: CallLog | None = None,
    ) -> None:
        self._clock = clock
        self.latency = latency  # seconds every API call takes at least (the benchmark's)
        self.calls = calls  # where to record every API call answered
        self._lock = threading.RLock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._events = Events(self._lock, clock, retry_delays=retry_delays, delivery_timeout=delivery_timeout)
        self._expiry_check_interval = expiry_check_interval
        self._stopped = threading.Event()
        self.url = ""
        route = r"/(?P<id>[^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/checkout/sessions", self._create_session),
            ("GET", "/v1/checkout/sessions", self._list_sessions),
            ("GET", f"/v1/checkout/sessions{route}", self._retrieve_session),
            ("GET", f"/v1/checkout/sessions{route}/line_items", self._list_line_items),
            ("POST", f"/v1/checkout/sessions{route}/expire", self._expire_session),
            ("GET", f"/v1/payment_intents{route}", self._retrieve_payment_intent),
            ("POST", "/v1/refunds", self._create_refund),
            ("GET", "/v1/refunds", self._list_refunds),
            ("GET", f"/v1/refunds{route}", self._retrieve_refund),
            ("GET", "/v1/events", self._list_events),
            ("GET", f"/v1/events{route}", self._retrieve_event),
            ("POST", "/v1/webhook_endpoints", self._events.create_endpoint),
            ("GET", "/v1/webhook_endpoints", self._events.list_endpoints),
            ("GET", f"/v1/webhook_endpoints{route}", self._events.retrieve_endpoint),
            ("POST", f"/v1/webhook_endpoints{route}", self._events.update_endpoint),
            ("DELETE", f"/v1/webhook_endpoints{route}", self._events.delete_endpoint),
        ]
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # -- lifecycle -------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> StripeEmulator:
        """Serve in a background thread; `port=0` picks a free port. Returns self."""
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="stripe-emulator", daemon=True
        )
        self._thread.start()
        self._stopped.clear()
        self._events.courier.start()
        threading.Thread(target=self._expire_on_time, name="stripe-emulator-expiry", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering."""
        self._stopped.set()
        self._events.courier.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _expire_on_time(self) -> None:
        # Stripe expires a session when its time is up, whether or not anyone asks about it.
        while not self._stopped.wait(self._expiry_check_interval):
            self._expire_due_sessions()

    # -- test controls: state ------------------------------------------------------------

    def reset(self) -> None:
        """Forget every object, key, fault, recorded request and queued delivery."""
        with self._lock:
            self._state = _State()
            self._events.reset()

    def sessions(self, stripe_account: str | None = None) -> list[dict[str, Any]]:
        """Every session of an account (None: the platform), oldest first, statuses current."""
        with self._lock:
            account = stripe_account or ""
            found = [self._refresh(s) for (acct, _), s in self._state.sessions.items() if acct == account]
            return [dict(s) for s in sorted(found, key=lambda s: (s["created"], s["_seq"]))]

    def line_items(self, session_id: str, stripe_account: str | None = None) -> list[dict[str, Any]]:
        """A session's line items: name, quantity, unit_amount, currency, amount_total."""
        with self._lock:
            session = self._session_for_control(session_id, stripe_account)
            keys = ("name", "quantity", "unit_amount", "currency", "amount_total")
            return [{k: item[k] for k in keys} for item in session["_line_items"]]

    def events(self, stripe_account: str | None = None) -> list[dict[str, Any]]:
        """Every Event of an account (None: the platform), oldest first, as /v1/events shows them."""
        with self._lock:
            self._expire_due_sessions()
            account = stripe_account or ""
            return self._events.events(account)

    def refunds(self, stripe_account: str | None = None) -> list[dict[str, Any]]:
        """Every refund of an account (None: the platform), oldest first."""
        with self._lock:
            account = stripe_account or ""
            return [public(r) for (acct, _), r in self._state.refunds.items() if acct == account]

    def webhook_endpoints(self) -> list[dict[str, Any]]:
        """Every webhook endpoint, oldest first, with `secret`, `account` (None: the platform), `connect`."""
        return self._events.endpoints()

    def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt so far, oldest first: event_id, endpoint_id, status, attempt, ...

        `status` is the endpoint's HTTP status, 0 when it could not be reached; `attempt`
        counts the attempts for that event and endpoint; `manual` is True for `deliver()`.
        """
        return self._events.deliveries()

    def requests(self) -> list[RecordedRequest]:
        """Every API request received so far."""
        with self._lock:
            return list(self._state.requests)

    # -- test controls: what payers, banks and Stripe's clock do ----------------------------

    def complete(
        self,
        session_id: str,
        stripe_account: str | None = None,
        *,
        delayed: bool = False,
        deliver: bool = True,
        email: str = "payer@example.com",
    ) -> dict[str, Any]:
        """Pay an open session as a payer would; emits `checkout.session.completed`.

        By card (`delayed=False`) it is `complete` and `paid`. By a delayed method (a SEPA
        debit, a bank transfer) it is `complete` but `unpaid` until `settle()`. Either way
        the session gets a PaymentIntent and `customer_details.email`. `deliver=False`
        records the event without sending it, as when Stripe's delivery is lost.
        """
        with self._lock:
            session = self._session_for_control(session_id, stripe_account)
            self._refresh(session)
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}, not open")
            intent = self._new_payment_intent(session, delayed)
            session.update(
                status="complete",
                payment_status="unpaid" if delayed else "paid",
                payment_intent=intent["id"],
                customer_details={
                    "address": None,
                    "email": email,
                    "name": None,
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
            )
            return self._announce(session, "checkout.session.completed", deliver=deliver)

    def settle(
        self, session_id: str, stripe_account: str | None = None, *, succeeded: bool, deliver: bool = True
    ) -> dict[str, Any]:
        """The bank's answer for a session completed with a delayed method.

        Succeeded: the session becomes `paid` (`checkout.session.async_payment_succeeded`).
        Failed: it stays `unpaid` (`checkout.session.async_payment_failed`).
        """
        with self._lock:
            session = self._session_for_control(session_id, stripe_account)
            intent = self._state.payment_intents.get((session["_account"], session["payment_intent"] or ""))
            if intent is None or intent["status"] != "processing":
                raise ValueError(f"session {session_id} has no payment waiting for the bank")
            if succeeded:
                intent.update(status="succeeded", amount_received=intent["amount"])
                session["payment_status"] = "paid"
                event_type = "checkout.session.async_payment_succeeded"
            else:
                intent["status"] = "requires_payment_method"
                event_type = "checkout.session.async_payment_failed"
            return self._announce(session, event_type, deliver=deliver)

    def expire(
        self, session_id: str, stripe_account: str | None = None, *, deliver: bool = True
    ) -> dict[str, Any]:
        """Stripe expiring an open session on its own (its time ran out); emits `checkout.session.expired`."""
        with self._lock:
            session = self._session_for_control(session_id, stripe_account)
            self._refresh(session)
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}, not open")
            session["status"] = "expired"
            return self._announce(session, "checkout.session.expired", deliver=deliver)

    def inject_fault(
        self,
        method: str,
        path_pattern: str,
        status: int = 500,
        *,
        count: int = 1,
        after: bool = False,
        delay: float = 0.0,
        reset: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status` (0: no error, only `delay`).

        `after=True` performs the request first and then fails (or delays) the answer, the
        way a response lost on the network looks to the client. `reset=True` closes the
        connection instead of answering (before or, with `after`, after acting).
        """
        with self._lock:
            self._state.faults.append(
                _Fault(method.upper(), re.compile(path_pattern), status, count, after, delay, reset)
            )

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet."""
        with self._lock:
            self._state.faults.clear()

    def revoke_key(self, api_key: str) -> None:
        """Make a key fail authentication from now on (a rotated key)."""
        with self._lock:
            self._state.revoked_keys.add(api_key)

    # -- test controls: webhook delivery ---------------------------------------------------

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Block until no webhook delivery is queued, due for retry or under way.

        Expiries that are due are noticed first. Deliveries held by `pause_deliveries()`
        do not count. Raises TimeoutError after `timeout` seconds.
        """
        with self._lock:
            self._expire_due_sessions()
        self._events.courier.wait_idle(timeout)

    def deliver(self, event_id: str, endpoint_id: str | None = None) -> list[dict[str, Any]]:
        """Send an event again now, in this thread: a duplicate, as Stripe's at-least-once delivery sends.

        To one endpoint, or to every endpoint that was subscribed when it happened. Works
        while deliveries are paused, makes one attempt each (no retries) and returns the
        delivery records, as `deliveries()` lists them.
        """
        return self._events.deliver(event_id, endpoint_id)

    def pause_deliveries(self) -> None:
        """Hold automatic deliveries (and retries) until `resume_deliveries()`; events still queue."""
        self._events.courier.pause()

    def resume_deliveries(self) -> None:
        """Release the deliveries `pause_deliveries()` held, oldest first."""
        self._events.courier.resume()

    # -- request handling ----------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one API request: (status, JSON body, extra headers), no sooner than the latency."""
        started = time.perf_counter()
        try:
            return self._answer(method, raw_path, headers, body)
        finally:
            hold_until(started, self.latency)
            if self.calls is not None:
                path = re.sub(r"/(?:cs|pi|re|evt|we)_[^/?]+", "/{id}", urlsplit(raw_path).path)
                self.calls.record(STRIPE, f"{method} {path}", started, time.perf_counter())

    def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(raw_path)
        params = decode_form(body if method == "POST" else parts.query)
        recorded = RecordedRequest(method, parts.path, params, headers)
        request_id = f"req_{secrets.token_hex(7)}"
        extra = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        with self._lock:
            self._state.requests.append(recorded)
            fault = self._take_fault(method, parts.path)
        if fault is not None and fault.delay and not fault.after:
            time.sleep(fault.delay)
        if fault is not None and fault.reset and not fault.after:
            raise ConnectionReset()
        if fault is not None and fault.status and not fault.after:
            recorded.status = fault.status
            return fault.status, self._fault_body(fault.status), extra
        try:
            account = self._authenticate(headers)
            call = ApiCall(
                params, account, "", {"id": request_id, "idempotency_key": headers.get("idempotency-key")}
            )
            status, answer = self._idempotent(method, parts.path, call)
        except StripeApiError as exc:
            status, answer = exc.status, {"error": {**exc.body, "request_log_url": f"emulator/{request_id}"}}
        if fault is not None and fault.delay and fault.after:
            time.sleep(fault.delay)  # acted, and the answer comes late
        if fault is not None and fault.reset:
            raise ConnectionReset()
        if fault is not None and fault.status and fault.after:
            status, answer = fault.status, self._fault_body(fault.status)
        if headers.get("idempotency-key"):
            extra["Idempotency-Key"] = headers["idempotency-key"]
        recorded.status = status
        return status, answer, extra

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._state.faults:
            if fault.remaining > 0 and fault.method == method and fault.path.search(path):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_body(status: int) -> dict[str, Any]:
        kind = {429: "rate_limit_error", 401: "authentication_error"}.get(status, "api_error")
        return {"error": {"type": kind, "message": f"Injected fault: HTTP {status}."}}

    def _authenticate(self, headers: dict[str, str]) -> str:
        auth = headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if not key:
            raise StripeApiError(401, "You did not provide an API key.", error_type="invalid_request_error")
        if not key.startswith(("sk_test_", "rk_test_")) or key in self._state.revoked_keys:
            masked = f"{key[:8]}{'*' * 4}{key[-4:]}" if len(key) > 12 else "****"
            raise StripeApiError(
                401, f"Invalid API Key provided: {masked}", error_type="invalid_request_error"
            )
        version = headers.get("stripe-version")
        if version != API_VERSION:
            raise invalid(f"The emulator serves API version {API_VERSION}; the request asked for {version}.")
        account = headers.get("stripe-account", "")
        if account and not re.fullmatch(r"acct_[A-Za-z0-9]+", account):
            raise StripeApiError(403, f"The provided key does not have access to account '{account}'.",
                                 error_type="invalid_request_error")  # fmt: skip
        return account

    def _idempotent(self, method: str, path: str, call: ApiCall) -> tuple[int, dict[str, Any]]:
        key = call.request["idempotency_key"]
        if method != "POST" or not key:
            return self._dispatch(method, path, call)
        fingerprint = hashlib.sha256(json.dumps([path, call.params], sort_keys=True).encode()).hexdigest()
        with self._lock:
            stored = self._state.idempotency.get((call.account, key, "")) or None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise StripeApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                        error_type="idempotency_error",
                    )
                return stored.status, stored.body
            status, answer = self._dispatch(method, path, call)
            self._state.idempotency[(call.account, key, "")] = _Stored(fingerprint, status, answer)
            return status, answer

    def _dispatch(self, method: str, path: str, call: ApiCall) -> tuple[int, dict[str, Any]]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                call.object_id = match.groupdict().get("id") or ""
                try:
                    with self._lock:
                        return 200, handler(call)
                except StripeApiError as exc:
                    return exc.status, {"error": exc.body}
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    # -- Checkout Sessions ---------------------------------------------------------------

    def _create_session(self, call: ApiCall) -> dict[str, Any]:
        params, account = call.params, call.account
        if "payment_method_types" in params:
            raise invalid(
                "Received unknown parameter: payment_method_types. Use allowed_payment_method_types or "
                "excluded_payment_method_types, or configure payment methods in the Dashboard.",
                "payment_method_types",
                "parameter_unknown",
            )
        check_schema(params, CREATE_SCHEMA)
        expand = expand_paths(params, SESSION_EXPANDABLE)
        mode = params.get("mode")
        if mode is None:
            raise invalid("Missing required param: mode.", "mode", "parameter_missing")
        if mode != "payment":
            raise invalid(f"Invalid mode: the emulator supports payment, not {mode}", "mode")
        ui_mode = params.get("ui_mode", "hosted_page")
        if ui_mode not in UI_MODES:
            raise invalid(
                f"Invalid ui_mode: must be one of {', '.join(sorted(UI_MODES))}",
                "ui_mode",
                "parameter_invalid_string",
            )
        embedded = ui_mode == "embedded_page"
        for name in ("success_url", "cancel_url"):
            if embedded and name in params:
                raise invalid(f"You cannot specify `{name}` when `ui_mode` is `embedded_page`.", name)
        if ui_mode == "hosted_page" and "return_url" in params:
            raise invalid("`return_url` can only be used when `ui_mode` is `embedded_page`.", "return_url")
        redirect = params.get("redirect_on_completion")
        if redirect is not None and redirect not in REDIRECT_ON_COMPLETION:
            raise invalid(
                f"Invalid redirect_on_completion: must be one of {', '.join(sorted(REDIRECT_ON_COMPLETION))}",
                "redirect_on_completion",
                "parameter_invalid_string",
            )
        if embedded and "return_url" not in params and redirect != "never":
            raise invalid("Missing required param: return_url.", "return_url", "parameter_missing")
        for name in ("success_url", "cancel_url", "return_url"):
            if name in params:
                url(params[name], name)
        reference = params.get("client_reference_id")
        if reference is not None and not 1 <= len(reference) <= 200:
            raise invalid("client_reference_id must be between 1 and 200 characters.", "client_reference_id")
        locale = params.get("locale", "auto")
        if locale not in LOCALES:
            raise invalid(f"Invalid locale: {locale}", "locale", "parameter_invalid_string")
        now = int(self._clock())
        expires_at = integer(params.get("expires_at", now + 24 * 3600), "expires_at")
        if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            raise invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.", "expires_at"
            )
        line_items = self._line_items(params.get("line_items"))
        currency = line_items[0]["currency"]
        subtotal = sum(item["amount_total"] for item in line_items)
        intent_data = params.get("payment_intent_data", {})
        fee = intent_data.get("application_fee_amount")
        if fee is not None:
            if not account:
                raise invalid("application_fee_amount requires a connected account (Stripe-Account).",
                              "payment_intent_data[application_fee_amount]")  # fmt: skip
            integer(fee, "payment_intent_data[application_fee_amount]", 0)

        session_id = f"cs_test_{secrets.token_urlsafe(42).replace('-', 'a').replace('_', 'b')}"
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": subtotal,
            "amount_total": subtotal,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": reference,
            "client_secret": f"{session_id}_secret_{secrets.token_urlsafe(18)}" if embedded else None,
            "created": now,
            "currency": currency,
            "customer": params.get("customer"),
            "customer_creation": params.get("customer_creation", "if_required"),
            "customer_details": None,  # filled in when the payer completes
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "locale": locale,
            "metadata": params.get("metadata", {}),
            "mode": mode,
            "payment_intent": None,  # created lazily when the payer confirms
            "payment_status": "unpaid",
            "redirect_on_completion": redirect or ("always" if embedded else None),
            "return_url": params.get("return_url"),
            "status": "open",
            "success_url": params.get("success_url"),
            "ui_mode": ui_mode,
            "url": f"{self.url}/c/pay/{session_id}" if ui_mode == "hosted_page" else None,
            "_seq": len(self._state.sessions),
            "_account": account,
            "_line_items": line_items,
            "_payment_intent_data": intent_data,
        }
        self._state.sessions[(account, session_id)] = session
        return self._session_object(session, expand)

    @staticmethod
    def _line_items(items: Any) -> list[dict[str, Any]]:
        if not items:
            raise invalid("Missing required param: line_items.", "line_items", "parameter_missing")
        if len(items) > MAX_LINE_ITEMS:
            raise invalid(f"You may only specify up to {MAX_LINE_ITEMS} line items.", "line_items")
        stored: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            prefix = f"line_items[{index}]"
            quantity = integer(item.get("quantity"), f"{prefix}[quantity]", 1) if "quantity" in item else None
            if quantity is None:
                raise invalid(
                    f"Missing required param: {prefix}[quantity].", f"{prefix}[quantity]", "parameter_missing"
                )
            price = item.get("price_data")
            if price is None:
                raise invalid(
                    "The emulator supports line items with price_data only.", f"{prefix}[price_data]"
                )
            currency = str(price.get("currency", "")).lower()
            if currency not in CURRENCIES:
                raise invalid(f"Invalid currency: {currency}", f"{prefix}[price_data][currency]")
            if "unit_amount" not in price:
                raise invalid("Missing required param: unit_amount.", f"{prefix}[price_data][unit_amount]",
                              "parameter_missing")  # fmt: skip
            amount = integer(price["unit_amount"], f"{prefix}[price_data][unit_amount]", 0)
            name = str(price.get("product_data", {}).get("name", ""))
            if not name.strip():
                raise invalid("Missing required param: name.", f"{prefix}[price_data][product_data][name]",
                              "parameter_missing")  # fmt: skip
            stored.append(
                {
                    "id": new_id("li"),
                    "name": name,
                    "quantity": quantity,
                    "unit_amount": amount,
                    "currency": currency,
                    "amount_total": amount * quantity,
                    "price": new_id("price"),
                    "product": new_id("prod"),
                }
            )
        if len({item["currency"] for item in stored}) > 1:
            raise invalid("All line items in a Checkout Session must share one currency.", "line_items")
        if sum(item["amount_total"] for item in stored) <= 0:
            raise invalid("The Checkout Session's total amount due must be greater than zero.", "line_items")
        return stored

    def _refresh(self, session: dict[str, Any]) -> dict[str, Any]:
        # The one place a session expires by the clock, so its event is emitted exactly once.
        if session["status"] == "open" and session["expires_at"] <= self._clock():
            session["status"] = "expired"
            self._announce(session, "checkout.session.expired")
        return session

    def _expire_due_sessions(self) -> None:
        with self._lock:
            for session in self._state.sessions.values():
                self._refresh(session)

    def _session(self, session_id: str, account: str) -> dict[str, Any]:
        session = self._state.sessions.get((account, session_id))
        if session is None:
            raise missing("checkout.session", session_id)
        return self._refresh(session)

    def _session_for_control(self, session_id: str, stripe_account: str | None) -> dict[str, Any]:
        session = self._state.sessions.get((stripe_account or "", session_id))
        if session is None:
            raise KeyError(session_id)
        return session

    def _retrieve_session(self, call: ApiCall) -> dict[str, Any]:
        only(call.params, {"expand"})
        expand = expand_paths(call.params, SESSION_EXPANDABLE)
        return self._session_object(self._session(call.object_id, call.account), expand)

    def _list_line_items(self, call: ApiCall) -> dict[str, Any]:
        only(call.params, PAGE_PARAMS)
        expand_paths(call.params, set())
        session = self._session(call.object_id, call.account)
        return self._line_item_list(session, call.params)

    def _line_item_list(self, session: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        items = [
            {
                "id": item["id"],
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": item["amount_total"],
                "amount_tax": 0,
                "amount_total": item["amount_total"],
                "currency": item["currency"],
                "description": item["name"],
                "price": {
                    "id": item["price"],
                    "object": "price",
                    "active": False,
                    "currency": item["currency"],
                    "livemode": False,
                    "product": item["product"],
                    "type": "one_time",
                    "unit_amount": item["unit_amount"],
                    "unit_amount_decimal": str(item["unit_amount"]),
                },
                "quantity": item["quantity"],
            }
            for item in session["_line_items"]
        ]
        return list_page(items, params, f"/v1/checkout/sessions/{session['id']}/line_items", "line item")

    def _expire_session(self, call: ApiCall) -> dict[str, Any]:
        only(call.params, {"expand"})
        expand = expand_paths(call.params, SESSION_EXPANDABLE)
        session = self._session(call.object_id, call.account)
        if session["status"] != "open":
            raise invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session '
                f"has a status of `{session['status']}`."
            )
        session["status"] = "expired"
        self._announce(session, "checkout.session.expired", request=call.request)
        return self._session_object(session, expand)

    def _list_sessions(self, call: ApiCall) -> dict[str, Any]:
        params = call.params
        only(params, LIST_FILTERS)
        expand = [
            p.removeprefix("data.") for p in expand_paths(params, {f"data.{p}" for p in SESSION_EXPANDABLE})
        ]
        names = ("status", "customer", "payment_intent", "payment_link", "subscription")
        equal = {name: params[name] for name in names if name in params}
        filters: list[Callable[[dict[str, Any]], bool]] = [
            lambda s: all(s.get(name) == value for name, value in equal.items())
        ]
        if "customer_details" in params:
            details = params["customer_details"]
            if not isinstance(details, dict):
                raise invalid("Invalid object: customer_details", "customer_details")
            only({f"customer_details[{k}]": v for k, v in details.items()}, {"customer_details[email]"})
            filters.append(lambda s: (s["customer_details"] or {}).get("email") == details.get("email"))
        if "created" in params:
            within = created_filter(params["created"])
            filters.append(lambda s: within(s["created"]))
        found = [self._refresh(s) for (acct, _), s in self._state.sessions.items() if acct == call.account]
        found.sort(key=lambda s: (s["created"], s["_seq"]), reverse=True)
        page = list_page(
            found, params, "/v1/checkout/sessions", "checkout.session", lambda s: all(f(s) for f in filters)
        )
        page["data"] = [self._session_object(s, expand) for s in page["data"]]
        return page

    def _session_object(self, session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = public(session)
        if "line_items" in expand:
            shown["line_items"] = self._line_item_list(session, {})
        if "payment_intent" in expand and session["payment_intent"]:
            intent = self._state.payment_intents[(session["_account"], session["payment_intent"])]
            shown["payment_intent"] = public(intent)
        return shown

    # -- PaymentIntents and refunds --------------------------------------------------------

    def _new_payment_intent(self, session: dict[str, Any], delayed: bool) -> dict[str, Any]:
        data = session["_payment_intent_data"]
        fee = data.get("application_fee_amount")
        intent: dict[str, Any] = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": 0 if delayed else session["amount_total"],
            "application_fee_amount": None if fee is None else int(fee),
            "created": int(self._clock()),
            "currency": session["currency"],
            "description": data.get("description"),
            "latest_charge": new_id("ch"),
            "livemode": False,
            "metadata": data.get("metadata", {}),
            "payment_method_types": ["sepa_debit"] if delayed else ["card"],
            "status": "processing" if delayed else "succeeded",
            "_account": session["_account"],
            "_amount_refunded": 0,
        }
        self._state.payment_intents[(session["_account"], intent["id"])] = intent
        return intent

    def _retrieve_payment_intent(self, call: ApiCall) -> dict[str, Any]:
        only(call.params, {"expand"})
        expand_paths(call.params, set())
        intent = self._state.payment_intents.get((call.account, call.object_id))
        if intent is None:
            raise missing("payment_intent", call.object_id)
        return public(intent)

    def _create_refund(self, call: ApiCall) -> dict[str, Any]:
        params = call.params
        if "charge" in params:
            raise invalid("The emulator refunds by payment_intent only.", "charge")
        only(params, {"payment_intent", "amount", "reason", "metadata", "refund_application_fee", "expand"})
        expand = expand_paths(params, {"payment_intent"})
        # The parameters' own shapes are checked before any object is looked up, as with Stripe.
        if "payment_intent" not in params:
            raise invalid("Missing required param: payment_intent.", "payment_intent", "parameter_missing")
        requested = integer(params["amount"], "amount", 1) if "amount" in params else None
        reason = params.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise invalid(f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}", "reason")
        check_metadata(params.get("metadata", {}))
        if "refund_application_fee" in params:
            boolean(params["refund_application_fee"], "refund_application_fee")
        intent_id = text(params["payment_intent"], "payment_intent")
        intent = self._state.payment_intents.get((call.account, intent_id))
        if intent is None:
            raise missing("payment_intent", intent_id, "payment_intent")
        if intent["status"] != "succeeded":
            raise invalid(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                "payment_intent",
            )
        remaining = intent["amount_received"] - intent["_amount_refunded"]
        if remaining <= 0:
            raise invalid(
                f"Charge {intent['latest_charge']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = remaining if requested is None else requested
        if amount > remaining:
            currency = intent["currency"]
            raise invalid(
                f"Refund amount ({pages.format_amount(amount, currency)}) is greater than unrefunded amount "
                f"on charge ({pages.format_amount(remaining, currency)})",
                "amount",
                "amount_too_large",
            )
        refund: dict[str, Any] = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": intent["latest_charge"],
            "created": int(self._clock()),
            "currency": intent["currency"],
            "metadata": params.get("metadata", {}),
            "payment_intent": intent["id"],
            "reason": reason,
            "status": "succeeded",
            "_seq": len(self._state.refunds),
        }
        self._state.refunds[(call.account, refund["id"])] = refund
        intent["_amount_refunded"] += amount
        self._events.emit("charge.refunded", self._charge_object(intent), call.account, request=call.request)
        return self._refund_object(refund, call.account, expand)

    def _charge_object(self, intent: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": intent["latest_charge"],
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount_received"],
            "amount_refunded": intent["_amount_refunded"],
            "created": intent["created"],
            "currency": intent["currency"],
            "livemode": False,
            "metadata": copy.deepcopy(intent["metadata"]),
            "paid": True,
            "payment_intent": intent["id"],
            "refunded": intent["_amount_refunded"] >= intent["amount_received"],
            "status": "succeeded",
        }

    def _refund_object(self, refund: dict[str, Any], account: str, expand: list[str]) -> dict[str, Any]:
        shown = public(refund)
        if "payment_intent" in expand:
            shown["payment_intent"] = public(self._state.payment_intents[(account, refund["payment_intent"])])
        return shown

    def _retrieve_refund(self, call: ApiCall) -> dict[str, Any]:
        only(call.params, {"expand"})
        expand = expand_paths(call.params, {"payment_intent"})
        refund = self._state.refunds.get((call.account, call.object_id))
        if refund is None:
            raise missing("refund", call.object_id)
        return self._refund_object(refund, call.account, expand)

    def _list_refunds(self, call: ApiCall) -> dict[str, Any]:
        params = call.params
        only(params, PAGE_PARAMS | {"payment_intent", "charge", "created"})
        expand = [p.removeprefix("data.") for p in expand_paths(params, {"data.payment_intent"})]
        within = created_filter(params["created"]) if "created" in params else lambda _: True
        found = [r for (acct, _), r in self._state.refunds.items() if acct == call.account]
        found.sort(key=lambda r: (r["created"], r["_seq"]), reverse=True)

        def keep(refund: dict[str, Any]) -> bool:
            return (
                params.get("payment_intent", refund["payment_intent"]) == refund["payment_intent"]
                and params.get("charge", refund["charge"]) == refund["charge"]
                and within(refund["created"])
            )

        page = list_page(found, params, "/v1/refunds", "refund", keep)
        page["data"] = [self._refund_object(r, call.account, expand) for r in page["data"]]
        return page

    # -- Events and webhook endpoints -------------------------------------------------------

    def _announce(
        self,
        session: dict[str, Any],
        event_type: str,
        *,
        deliver: bool = True,
        request: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Emit a checkout.session.* event with the session as it is now; returns that snapshot."""
        snapshot = public(session)
        self._events.emit(event_type, snapshot, session["_account"], deliver=deliver, request=request)
        return snapshot

    def _list_events(self, call: ApiCall) -> dict[str, Any]:
        self._expire_due_sessions()
        return self._events.list_events(call)

    def _retrieve_event(self, call: ApiCall) -> dict[str, Any]:
        self._expire_due_sessions()
        return self._events.retrieve_event(call)

    # -- the payer's pages --------------------------------------------------------------------

    def checkout_page(
        self,
        session_id: str,
        *,
        embedded: bool,
        client_secret: str | None = None,
        form: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """The hosted (or embedded) Checkout page: GET shows it (`form` None), POST acts on it.

        Returns (HTTP status, HTML, extra headers). Paying redirects (303) to the
        `success_url` (embedded: the `return_url`, in the top window) with
        `{CHECKOUT_SESSION_ID}` filled in.
        """
        ui_mode = "embedded_page" if embedded else "hosted_page"
        headers = {"Cache-Control": "no-store"} | ({} if embedded else {"X-Frame-Options": "DENY"})
        with self._lock:
            matches = [
                s
                for (_, sid), s in self._state.sessions.items()
                if sid == session_id and s["ui_mode"] == ui_mode
            ]
            if not matches:
                return 404, pages.message_page("No such Checkout Session", session_id), headers
            session = self._refresh(matches[0])
            if embedded and client_secret != session["client_secret"]:
                return (
                    403,
                    pages.message_page("Wrong client secret", "It does not belong to this session."),
                    headers,
                )
            account = session["_account"] or None
            page_url = (
                f"/c/embedded/{session_id}?client_secret={quote(client_secret or '')}"
                if embedded
                else f"/c/pay/{session_id}"
            )
            message = None
            status = 200
            if form is not None:
                action = form.get("action", "card")
                if action in {"card", "delayed"} and session["status"] == "open":
                    self.complete(
                        session_id,
                        account,
                        delayed=action == "delayed",
                        email=form.get("email") or "payer@example.com",
                    )
                    target = session["return_url"] if embedded else session["success_url"]
                    if embedded and session["redirect_on_completion"] != "always":
                        return 200, pages.completed_in_frame_page(session_id), headers
                    location = (target or page_url).replace("{CHECKOUT_SESSION_ID}", session_id)
                    return 303, "", headers | {"Location": location}
                if action in {"settle_succeeded", "settle_failed"} and self._processing(session):
                    self.settle(session_id, account, succeeded=action == "settle_succeeded")
                    return 303, "", headers | {"Location": page_url}
                status, message = 409, f"Nothing to do: this Checkout Session is {session['status']}."
            page = pages.checkout_page(
                public(session),
                session["_line_items"],
                embedded=embedded,
                form_action=page_url,
                payment_processing=self._processing(session),
                message=message,
            )
            return status, page, headers

    def _processing(self, session: dict[str, Any]) -> bool:
        intent = self._state.payment_intents.get((session["_account"], session["payment_intent"] or ""))
        return intent is not None and intent["status"] == "processing"


def _handler_for(emulator: StripeEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as stripe-python's requests session expects
        # Headers and body go out in two writes; with Nagle's algorithm the body waits
        # for the client's delayed ACK, about 40 ms a call on Linux loopback.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests and the local API print their own summaries

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            parts = urlsplit(self.path)
            if method in {"GET", "POST"} and self._page(method, parts.path, parts.query, body):
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, answer, extra = emulator.handle(method, self.path, headers, body)
            except ConnectionReset:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send(status, json.dumps(answer).encode(), "application/json", extra)

        def _page(self, method: str, path: str, query: str, body: str) -> bool:
            if path in {"/v3", "/v3/", "/v3/stripe.js"} and method == "GET":
                script = pages.stripe_js(emulator.url).encode()
                self._send(
                    200, script, "application/javascript; charset=utf-8", {"Cache-Control": "no-store"}
                )
                return True
            page = re.fullmatch(r"/c/(pay|embedded)/([^/]+)", path)
            if page is None:
                return False
            form = dict(parse_qsl(body)) if method == "POST" else None
            status, text, extra = emulator.checkout_page(
                page.group(2),
                embedded=page.group(1) == "embedded",
                client_secret=dict(parse_qsl(query)).get("client_secret"),
                form=form,
            )
            self._send(status, text.encode(), "text/html; charset=utf-8", extra)
            return True

        def _send(self, status: int, payload: bytes, content_type: str, extra: dict[str, str]) -> None:
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler


def main() -> None:
    """`stripe-emulator [--port N]`: serve the emulator until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve the Stripe Checkout emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=12111)
    args = parser.parse_args()
    emulator = StripeEmulator().start(port=args.port)
    print(f"Stripe Checkout emulator on {emulator.url} (API version {API_VERSION}); Ctrl-C stops it.")
    print(f'Stripe.js stand-in for embedded Checkout: <script src="{emulator.url}/v3/"></script>')
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
