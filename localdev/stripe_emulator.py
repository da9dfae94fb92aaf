"""A strict, stateful emulator of Stripe's Checkout Sessions API, for tests and local runs.

Stripe's own stripe-mock is stateless and not installable here, so this module serves
the handful of endpoints the service uses, over real HTTP, to the real stripe-python
client (pointed here with `base_addresses={"api": url}`):

    POST /v1/checkout/sessions               create (form-encoded, nested params)
    GET  /v1/checkout/sessions/{id}          retrieve
    GET  /v1/checkout/sessions               list (Stripe's filters only)
    POST /v1/checkout/sessions/{id}/expire   expire (open sessions only)

It is strict on purpose: unknown parameters, retired names (`ui_mode=hosted`,
`payment_method_types`), forbidden combinations (`cancel_url` with `embedded_page`) and
limits (100 line items, metadata sizes) are Stripe-shaped 400s, so a bug real Stripe
would catch is caught here too. It checks the API key and pins the API version, keeps
sessions per `Stripe-Account`, and treats idempotency keys as Stripe does (same key and
parameters: the saved answer again; other parameters: 400 `idempotency_error`).

Tests drive it through Python (`complete`, `inject_fault`, `sessions`, `requests`);
a developer can pay a hosted session in the browser at its `url`. The benchmark gives
every API call a standing latency (`latency=`, a floor per call) and records it in a
`CallLog`. Not shipped in the Lambda package.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from localdev.remote_calls import STRIPE, CallLog, hold_until

API_VERSION = "2026-10-28.endive"
UI_MODES = {"hosted_page", "embedded_page", "elements", "form"}
LOCALES = set(
    [
        "auto",
        "bg",
        "cs",
        "da",
        "de",
        "el",
        "en",
        "en-GB",
        "es",
        "es-419",
        "et",
        "fi",
        "fil",
        "fr",
        "fr-CA",
        "hr",
        "hu",
        "id",
        "it",
        "ja",
        "ko",
        "lt",
        "lv",
        "ms",
        "mt",
        "nb",
        "nl",
        "pl",
        "pt",
        "pt-BR",
        "ro",
        "ru",
        "sk",
        "sl",
        "sv",
        "th",
        "tr",
        "vi",
        "zh",
        "zh-HK",
        "zh-TW",
    ]
)
CURRENCIES = set(
    ["sek", "nok", "dkk", "eur", "gbp", "usd", "chf", "pln", "czk", "huf", "isk", "jpy", "cad", "aud", "nzd"]
)
ZERO_DECIMAL = {"jpy", "isk", "huf"}  # (huf is two-decimal at Stripe for most uses; kept simple)
MAX_LINE_ITEMS = 100

# Which parameters the emulator knows, as Stripe nests them. None: a scalar; a dict:
# a nested object with these keys; "metadata": free keys within Stripe's limits; a list
# of one schema: an array of objects.
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


class StripeApiError(Exception):
    """An error answer, shaped as Stripe shapes it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": error_type, "message": message}
        if param is not None:
            self.body["param"] = param
        if code is not None:
            self.body["code"] = code


def _invalid(message: str, param: str | None = None, code: str | None = None) -> StripeApiError:
    return StripeApiError(400, message, param=param, code=code)


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's nested form encoding (`a[b][0][c]=v`) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True, strict_parsing=False):
        parts = re.findall(r"^[^\[]+|\[([^\]]*)\]", raw_key)
        head = raw_key.split("[", 1)[0]
        path: list[str] = [head] + [p for p in parts[1:]]
        node: Any = root
        for position, part in enumerate(path):
            last = position == len(path) - 1
            if isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:  # pragma: no cover - the encoder never nests lists directly
                raise _invalid(f"Invalid parameter: {raw_key}", raw_key)
    decoded: dict[str, Any] = _lists(root)
    return decoded


def _lists(node: Any) -> Any:
    # `line_items[0]`, `line_items[1]` arrive as a dict with digit keys.
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _param(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


def check_schema(value: Any, schema: Any, prefix: str = "") -> None:
    """400 for any parameter the emulator (and so our use of Stripe) does not know."""
    if schema is None:
        if isinstance(value, dict | list) and prefix not in {"expand", "allowed_payment_method_types",
                                                             "excluded_payment_method_types",
                                                             "product_data[images]"}:  # fmt: skip
            raise _invalid(f"Invalid {prefix}: must be a string", prefix)
        return
    if schema == "metadata":
        if not isinstance(value, dict):
            raise _invalid(f"Invalid {prefix}: must be a hash", prefix)
        if len(value) > 50:
            raise _invalid("Metadata can have up to 50 keys.", prefix)
        for key, item in value.items():
            if len(key) > 40 or "[" in key or "]" in key:
                raise _invalid(
                    f"Metadata keys can have up to 40 characters and no square brackets: {key}", prefix
                )
            if not isinstance(item, str) or len(item) > 500:
                raise _invalid(f"Metadata values can have up to 500 characters: {key}", _param(prefix, key))
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _invalid(f"Invalid array: {prefix}", prefix)
        for index, item in enumerate(value):
            check_schema(item, schema[0], _param(prefix, index))
        return
    if not isinstance(value, dict):
        raise _invalid(f"Invalid object: {prefix}", prefix)
    for key, item in value.items():
        name = _param(prefix, key)
        if key not in schema:
            raise _invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")
        check_schema(item, schema[key], name)


def _int(value: Any, param: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid integer: {value}", param) from None
    if minimum is not None and number < minimum:
        raise _invalid(f"Invalid {param}: must be greater than or equal to {minimum}", param)
    return number


def _url(value: Any, param: str) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise _invalid("Not a valid URL", param, "url_invalid")
    return str(value)


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int
    after: bool
    delay: float


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
    sessions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (account, id) -> session
    idempotency: dict[tuple[str, str, str], _Stored] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    revoked_keys: set[str] = field(default_factory=set)
    requests: list[RecordedRequest] = field(default_factory=list)


class StripeEmulator:
    """The emulator's state and HTTP server; `start()` serves it on 127.0.0.1."""

    def __init__(
        self, clock: Callable[[], float] = time.time, *, latency: float = 0.0, calls: CallLog | None = None
    ) -> None:
        """`latency`: seconds every API call takes at least (may be changed while serving);
        `calls`: where to record every API call answered."""
        self._clock = clock
        self.latency = latency
        self.calls = calls
        self._lock = threading.RLock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> StripeEmulator:
        """Serve in a background thread; `port=0` picks a free port. Returns self."""
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
        self.url = f"http://{shown}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- test controls -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every session, key, fault and recorded request."""
        with self._lock:
            self._state = _State()

    def sessions(self, stripe_account: str | None = None) -> list[dict[str, Any]]:
        """Every session of an account (None: the platform), oldest first, statuses current."""
        with self._lock:
            account = stripe_account or ""
            found = [self._refresh(s) for (acct, _), s in self._state.sessions.items() if acct == account]
            return [dict(s) for s in sorted(found, key=lambda s: (s["created"], s["_seq"]))]

    def complete(self, session_id: str, stripe_account: str | None = None) -> dict[str, Any]:
        """Pay an open session as a payer would."""
        with self._lock:
            session = self._state.sessions.get((stripe_account or "", session_id))
            if session is None:
                raise KeyError(session_id)
            self._refresh(session)
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}, not open")
            session.update(
                status="complete",
                payment_status="paid",
                payment_intent=f"pi_{secrets.token_hex(12)}",
            )
            return dict(session)

    def inject_fault(
        self,
        method: str,
        path_pattern: str,
        status: int = 500,
        *,
        count: int = 1,
        after: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` matching requests with `status` (0: no error, only `delay`).

        `after=True` performs the request first and then fails the answer, the way a
        response lost on the network looks to the client.
        """
        with self._lock:
            self._state.faults.append(
                _Fault(method.upper(), re.compile(path_pattern), status, count, after, delay)
            )

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet."""
        with self._lock:
            self._state.faults.clear()

    def revoke_key(self, api_key: str) -> None:
        """Make a key fail authentication from now on (a rotated key)."""
        with self._lock:
            self._state.revoked_keys.add(api_key)

    def requests(self) -> list[RecordedRequest]:
        """Every request received so far."""
        with self._lock:
            return list(self._state.requests)

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
                operation = f"{method} {re.sub(r'/cs_[^/?]+', '/{id}', urlsplit(raw_path).path)}"
                self.calls.record(STRIPE, operation, started, time.perf_counter())

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
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status and not fault.after:
            recorded.status = fault.status
            return fault.status, self._fault_body(fault.status), extra
        try:
            account = self._authenticate(headers)
            status, answer = self._idempotent(method, parts.path, params, headers, account)
        except StripeApiError as exc:
            status, answer = exc.status, {"error": {**exc.body, "request_log_url": f"emulator/{request_id}"}}
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
        kind = "rate_limit_error" if status == 429 else "api_error"
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
            raise _invalid(f"The emulator serves API version {API_VERSION}; the request asked for {version}.")
        account = headers.get("stripe-account", "")
        if account and not re.fullmatch(r"acct_[A-Za-z0-9]+", account):
            raise StripeApiError(403, f"The provided key does not have access to account '{account}'.",
                                 error_type="invalid_request_error")  # fmt: skip
        return account

    def _idempotent(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str], account: str
    ) -> tuple[int, dict[str, Any]]:
        key = headers.get("idempotency-key")
        if method != "POST" or not key:
            return self._dispatch(method, path, params, account)
        fingerprint = hashlib.sha256(json.dumps([path, params], sort_keys=True).encode()).hexdigest()
        with self._lock:
            stored = self._state.idempotency.get((account, key, "")) or None
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
            status, answer = self._dispatch(method, path, params, account)
            self._state.idempotency[(account, key, "")] = _Stored(fingerprint, status, answer)
            return status, answer

    def _dispatch(
        self, method: str, path: str, params: dict[str, Any], account: str
    ) -> tuple[int, dict[str, Any]]:
        try:
            if path == "/v1/checkout/sessions":
                if method == "POST":
                    return 200, self._create(params, account)
                if method == "GET":
                    return 200, self._list(params, account)
            match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)(/expire)?", path)
            if match and method == "GET" and not match.group(2):
                self._no_params(params)
                return 200, self._public(self._get(match.group(1), account))
            if match and method == "POST" and match.group(2):
                self._no_params(params)
                return 200, self._expire(match.group(1), account)
        except StripeApiError as exc:
            return exc.status, {"error": exc.body}
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _no_params(params: dict[str, Any]) -> None:
        unknown = [k for k in params if k != "expand"]
        if unknown:
            raise _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")

    # -- the Checkout Sessions API -------------------------------------------------------

    def _create(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        if "payment_method_types" in params:
            raise _invalid(
                "Received unknown parameter: payment_method_types. Use allowed_payment_method_types or "
                "excluded_payment_method_types, or configure payment methods in the Dashboard.",
                "payment_method_types",
                "parameter_unknown",
            )
        check_schema(params, CREATE_SCHEMA)
        mode = params.get("mode")
        if mode is None:
            raise _invalid("Missing required param: mode.", "mode", "parameter_missing")
        if mode != "payment":
            raise _invalid(f"Invalid mode: the emulator supports payment, not {mode}", "mode")
        ui_mode = params.get("ui_mode", "hosted_page")
        if ui_mode not in UI_MODES:
            raise _invalid(
                f"Invalid ui_mode: must be one of {', '.join(sorted(UI_MODES))}",
                "ui_mode",
                "parameter_invalid_string",
            )
        embedded = ui_mode == "embedded_page"
        for name in ("success_url", "cancel_url"):
            if embedded and name in params:
                raise _invalid(f"You cannot specify `{name}` when `ui_mode` is `embedded_page`.", name)
        if ui_mode == "hosted_page" and "return_url" in params:
            raise _invalid("`return_url` can only be used when `ui_mode` is `embedded_page`.", "return_url")
        if embedded and "return_url" not in params and params.get("redirect_on_completion") != "never":
            raise _invalid("Missing required param: return_url.", "return_url", "parameter_missing")
        for name in ("success_url", "cancel_url", "return_url"):
            if name in params:
                _url(params[name], name)
        reference = params.get("client_reference_id")
        if reference is not None and not 1 <= len(reference) <= 200:
            raise _invalid("client_reference_id must be between 1 and 200 characters.", "client_reference_id")
        locale = params.get("locale", "auto")
        if locale not in LOCALES:
            raise _invalid(f"Invalid locale: {locale}", "locale", "parameter_invalid_string")
        now = int(self._clock())
        expires_at = _int(params.get("expires_at", now + 24 * 3600), "expires_at")
        if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
            raise _invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.", "expires_at"
            )
        currency, subtotal = self._line_items(params.get("line_items"))
        fee = params.get("payment_intent_data", {}).get("application_fee_amount")
        if fee is not None:
            if not account:
                raise _invalid("application_fee_amount requires a connected account (Stripe-Account).",
                               "payment_intent_data[application_fee_amount]")  # fmt: skip
            _int(fee, "payment_intent_data[application_fee_amount]", 0)

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
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "livemode": False,
            "locale": locale,
            "metadata": params.get("metadata", {}),
            "mode": mode,
            "payment_intent": None,  # created lazily when the payer confirms
            "payment_status": "unpaid",
            "return_url": params.get("return_url"),
            "status": "open",
            "success_url": params.get("success_url"),
            "ui_mode": ui_mode,
            "url": f"{self.url}/c/pay/{session_id}" if ui_mode == "hosted_page" else None,
            "_seq": len(self._state.sessions),
            "_account": account,
        }
        with self._lock:
            self._state.sessions[(account, session_id)] = session
        return self._public(session)

    @staticmethod
    def _line_items(items: Any) -> tuple[str, int]:
        if not items:
            raise _invalid("Missing required param: line_items.", "line_items", "parameter_missing")
        if len(items) > MAX_LINE_ITEMS:
            raise _invalid(f"You may only specify up to {MAX_LINE_ITEMS} line items.", "line_items")
        currencies: set[str] = set()
        subtotal = 0
        for index, item in enumerate(items):
            prefix = f"line_items[{index}]"
            quantity = _int(item.get("quantity"), f"{prefix}[quantity]", 1) if "quantity" in item else None
            if quantity is None:
                raise _invalid(
                    f"Missing required param: {prefix}[quantity].", f"{prefix}[quantity]", "parameter_missing"
                )
            price = item.get("price_data")
            if price is None:
                raise _invalid(
                    "The emulator supports line items with price_data only.", f"{prefix}[price_data]"
                )
            currency = str(price.get("currency", "")).lower()
            if currency not in CURRENCIES:
                raise _invalid(f"Invalid currency: {currency}", f"{prefix}[price_data][currency]")
            if "unit_amount" not in price:
                raise _invalid("Missing required param: unit_amount.", f"{prefix}[price_data][unit_amount]",
                               "parameter_missing")  # fmt: skip
            amount = _int(price["unit_amount"], f"{prefix}[price_data][unit_amount]", 0)
            if not str(price.get("product_data", {}).get("name", "")).strip():
                raise _invalid("Missing required param: name.", f"{prefix}[price_data][product_data][name]",
                               "parameter_missing")  # fmt: skip
            currencies.add(currency)
            subtotal += amount * quantity
        if len(currencies) > 1:
            raise _invalid("All line items in a Checkout Session must share one currency.", "line_items")
        if subtotal <= 0:
            raise _invalid("The Checkout Session's total amount due must be greater than zero.", "line_items")
        return currencies.pop(), subtotal

    def _refresh(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["status"] == "open" and session["expires_at"] <= self._clock():
            session["status"] = "expired"
        return session

    def _get(self, session_id: str, account: str) -> dict[str, Any]:
        with self._lock:
            session = self._state.sessions.get((account, session_id))
            if session is None:
                raise StripeApiError(
                    404, f"No such checkout.session: '{session_id}'", param="id", code="resource_missing"
                )
            return self._refresh(session)

    def _expire(self, session_id: str, account: str) -> dict[str, Any]:
        with self._lock:
            session = self._get(session_id, account)
            if session["status"] != "open":
                raise _invalid(
                    'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session '
                    f"has a status of `{session['status']}`."
                )
            session["status"] = "expired"
            return self._public(session)

    def _list(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        for key in params:
            if key not in LIST_FILTERS:
                raise _invalid(f"Received unknown parameter: {key}", key, "parameter_unknown")
        limit = _int(params.get("limit", 10), "limit", 1)
        with self._lock:
            found = [self._refresh(s) for (acct, _), s in self._state.sessions.items() if acct == account]
        found.sort(key=lambda s: (s["created"], s["_seq"]), reverse=True)
        for name in ("status", "customer", "payment_intent"):
            if name in params:
                found = [s for s in found if s.get(name) == params[name]]
        if "starting_after" in params:
            ids = [s["id"] for s in found]
            if params["starting_after"] in ids:
                found = found[ids.index(params["starting_after"]) + 1 :]
        return {
            "object": "list",
            "url": "/v1/checkout/sessions",
            "has_more": len(found) > limit,
            "data": [self._public(s) for s in found[:limit]],
        }

    @staticmethod
    def _public(session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    # -- the pay page for local runs -----------------------------------------------------

    def pay_page(self, session_id: str, submit: bool) -> tuple[int, str, dict[str, str]]:
        """A hosted 'checkout page' a developer can pay on: GET shows it, POST pays."""
        with self._lock:
            matches = [s for (_, sid), s in self._state.sessions.items() if sid == session_id]
            if not matches:
                return 404, "<h1>No such checkout session</h1>", {}
            session = self._refresh(matches[0])
            if submit and session["status"] == "open":
                self.complete(session_id, session["_account"] or None)
                target = session.get("success_url") or "/"
                return 303, "", {"Location": target}
            amount = f"{session['amount_total'] / (1 if session['currency'] in ZERO_DECIMAL else 100):.2f}"
            button = (
                '<form method="post"><button type="submit">Pay (emulator)</button></form>'
                if session["status"] == "open"
                else ""
            )
            page = (
                "<!doctype html><title>Stripe Checkout emulator</title>"
                f"<h1>{html.escape(session['currency'].upper())} {amount}</h1>"
                f"<p>Session <code>{html.escape(session_id)}</code> is "
                f"<b>{html.escape(session['status'])}</b>.</p>"
                f"{button}"
            )
            return 200, page, {}


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
            page = re.fullmatch(r"/c/pay/([^/?]+)", urlsplit(self.path).path)
            if page:
                status, text, extra = emulator.pay_page(page.group(1), submit=method == "POST")
                self._send(status, text.encode(), "text/html; charset=utf-8", extra)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, extra = emulator.handle(method, self.path, headers, body)
            self._send(status, json.dumps(answer).encode(), "application/json", extra)

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
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()
