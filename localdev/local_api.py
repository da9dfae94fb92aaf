"""`./dev run` (`python -m localdev.local_api`): the API on 127.0.0.1, as `sam local start-api` would.

Needs no Docker, no AWS account and no Stripe account. One command starts:

- moto's DynamoDB and Secrets Manager (tables created from template.yaml),
- the Stripe Checkout emulator, unless `STRIPE_SECRET_KEY` holds a Stripe *test* key,
  in which case the function talks to real Stripe test mode,
- a demo company with catalogued articles and an API key bound to it, onboarded through
  `checkout-admin` (the key in a usage plan of moto's API Gateway, as on a stage),
- an HTTP server that turns each request into the API Gateway REST proxy event the
  deployed function receives, and calls the real handler with it; beside the API it
  serves Swagger UI, the OpenAPI document and the demo booking frontend (`pages`).
  Like API Gateway, it refuses an unknown `x-api-key` and hands the function the id of
  a known one.

It prints a ready-to-paste `curl`, and Ctrl-C stops everything it started. A port that
is taken ends it with one line naming the port and the option that changes it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from checkout.contract import EXAMPLE_COMPANY_ID
from localdev.apigw import LocalContext, response_body, response_headers, rest_event
from localdev.aws_stack import (
    LocalAws,
    api_key_id,
    aws_environment,
    capture_bus,
    create_event_bus,
    create_tables,
    create_usage_plan,
)
from localdev.openapi import openapi_document
from localdev.pages import STRIPE_JS_URL, DemoArticle, DemoConfig, Pages
from localdev.stripe_emulator import StripeEmulator

PROG = "./dev run"

DEMO_COMPANY_ID = EXAMPLE_COMPANY_ID  # the OpenAPI examples are requests for the demo company
DEMO_ARTICLES = [
    (1, 42, "Haircut 45 min", 45000, "SEK"),
    (1, 43, "Beard trim", 15000, "SEK"),
    (2, 7, "Gift card 500 kr", 50000, "SEK"),
]
WEBHOOK_ROUTE = "/payment/stripe/v1/webhook/"
EVENTS_QUEUE = "local-booking-events"
# The names checkout-admin uses by default (STAGE=dev), so it needs no table settings here.
DEFAULT_TABLES = {
    "COMPANIES_TABLE_NAME": "checkout-companies-dev",
    "SESSIONS_TABLE_NAME": "checkout-sessions-dev",
    "IDEMPOTENCY_TABLE_NAME": "checkout-idempotency-dev",
}
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# API Gateway's answer to an unknown key (the template's INVALID_API_KEY gateway response).
INVALID_API_KEY = (
    b'{"ResponseStatus":{"ErrorCode":"Forbidden","Message":"A valid x-api-key header is required."}}'
)
EMULATOR_STRIPE_KEY = "sk_test_51LocalEmulatorKey0000000000"
EMULATOR_PUBLISHABLE_KEY = "pk_test_51LocalEmulatorKey0000000000"


class PortInUse(SystemExit):
    """A port `./dev run` needs cannot be listened on; the message says which and what to do."""


def _listen[T](what: str, option: str, host: str, port: int, start: Callable[[], T]) -> T:
    """Run `start` (which binds `port`), turning a bind failure into one line for the developer."""
    try:
        return start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{PROG}: port {port} ({what}) is already in use on {host}: is another ./dev run "
                f"still running? Stop it, or choose another port with {option} N."
            ) from None
        raise PortInUse(
            f"{PROG}: cannot listen on {host}:{port} ({what}): {exc.strerror or exc}; "
            f"choose another address or port ({option})."
        ) from None


def demo_confirmation_url(base_url: str, reference: str | None = None) -> str:
    """The demo's confirmation page, which asks the status operation about the session.

    Stripe puts the session's id in place of `{CHECKOUT_SESSION_ID}` when it sends the
    payer there.
    """
    booking = f"&booking={reference}" if reference else ""
    return f"{base_url}/demo/confirmed?session_id={{CHECKOUT_SESSION_ID}}{booking}"


def sample_request(base_url: str, reference: str = "demo-booking-1") -> dict[str, Any]:
    """The published operation's sample request, with real values for the demo company."""
    return {
        "CompanyId": DEMO_COMPANY_ID,
        "CountryCode": "SE",
        "Articles": [{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}],
        "InternalReferenceId": reference,
        "ConfirmationUrl": demo_confirmation_url(base_url, reference),
        "CancelUrl": f"{base_url}/demo/cancelled?booking={reference}",
        "UiMode": "hosted",
    }


def curl_command(base_url: str, api_key: str) -> str:
    """A ready-to-paste curl for the sample request."""
    body = json.dumps(sample_request(base_url), separators=(",", ":"))
    return (
        f"curl -sS -X POST '{base_url}/payment/stripe/v1/checkout' "
        f"-H 'Content-Type: application/json' -H 'x-api-key: {api_key}' -d '{body}'"
    )


def onboard_demo_company(base_url: str, stripe_key: str) -> str:
    """Onboard the demo company, its articles and an API key bound to it through
    checkout-admin (USAGE_PLAN_ID must name a usage plan); return the key's value."""
    from checkout.admin import main as admin

    def run(*argv: str, stdin: str = "") -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            admin(list(argv), stdin=io.StringIO(stdin))
        return out.getvalue()

    run(
        "company", "put", "--company-id", DEMO_COMPANY_ID,
        "--allowed-url-prefix", f"{base_url}/",
        "--allowed-url-prefix", f"{base_url.replace('127.0.0.1', 'localhost')}/",
        "--allowed-url-prefix", "http://localhost:3000/",
        "--allowed-url-prefix", "https://booking.example.com/",
        "--confirmation-url", demo_confirmation_url(base_url),
        "--cancel-url", f"{base_url}/demo/cancelled",
        "--stripe-secret-key-stdin",
        stdin=stripe_key,
    )  # fmt: skip
    for type_id, article_id, name, amount, currency in DEMO_ARTICLES:
        run(
            "article", "put", "--company-id", DEMO_COMPANY_ID, "--article-type-id", str(type_id),
            "--article-id", str(article_id), "--name", name, "--unit-amount", str(amount),
            "--currency", currency,
        )  # fmt: skip
    created = json.loads(run("apikey", "create", "--company-id", DEMO_COMPANY_ID))
    return str(created["api_key"])


def register_demo_webhook(url: str) -> None:
    """Register the local webhook route with the emulator and store its signing secret."""
    from checkout.admin import main as admin

    with contextlib.redirect_stdout(io.StringIO()):
        admin(["webhook", "create", "--company-id", DEMO_COMPANY_ID, "--url", url], stdin=io.StringIO(""))


def _handler_class(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], pages: Pages, key_id: Callable[[str], str | None]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in {"content-length", "connection"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                message = (
                    b'{"ResponseStatus":{"ErrorCode":"RequestTooLarge","Message":"The body is too large."}}'
                )
                self._reply(413, {"Content-Type": "application/json"}, message)
                return
            body = self.rfile.read(length) if length else None
            page = pages.get(parts.path) if self.command in {"GET", "HEAD"} else None
            if page is not None:
                headers = {"Content-Type": page.content_type, "Cache-Control": "no-store"}
                self._reply(page.status, headers, page.body)
                return
            headers = {name: value for name, value in self.headers.items()}
            api_key = self.headers.get("x-api-key")
            known_key = key_id(api_key) if api_key is not None and self.command != "OPTIONS" else None
            if api_key is not None and self.command != "OPTIONS" and known_key is None:
                self._reply(403, {"Content-Type": "application/json"}, INVALID_API_KEY)
                return
            event = rest_event(
                self.command,
                parts.path,
                body,
                headers=headers,
                query=parts.query,
                source_ip=self.client_address[0],
                api_key_id=known_key,
            )
            # Served at the root, not under a stage path: the URL the caller used is the path.
            event["requestContext"]["path"] = parts.path
            response = invoke(event)
            self._reply(response["statusCode"], response_headers(response), response_body(response))

        # Every method goes to the handler, which answers 405/404 as API Gateway + Lambda would.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    return Handler


def demo_config(stripe_js_url: str, publishable_key: str, api_key: str) -> DemoConfig:
    """The demo frontend's configuration for the demo company."""
    return DemoConfig(
        company_id=DEMO_COMPANY_ID,
        api_key=api_key,
        country_code="SE",
        articles=tuple(DemoArticle(*article) for article in DEMO_ARTICLES),
        stripe_js_url=stripe_js_url,
        publishable_key=publishable_key,
    )


class LocalStack:
    """Everything `./dev run` runs; `start()` then `stop()`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 3000, aws_port: int = 4566, stripe_port: int = 12111
    ):
        self.host, self.port, self.aws_port, self.stripe_port = host, port, aws_port, stripe_port
        self.aws: LocalAws | None = None
        self.emulator: StripeEmulator | None = None
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""
        self.api_key = ""
        self.events_queue_url = ""
        self.real_stripe = False
        self._serving = False

    def start(self) -> LocalStack:
        """Start the stand-ins, onboard the demo company and serve the API."""
        stripe_key = os.environ.get("STRIPE_SECRET_KEY", "").strip()
        if stripe_key and not stripe_key.startswith(("sk_test_", "rk_test_")):
            raise SystemExit(f"{PROG}: STRIPE_SECRET_KEY must be a Stripe test key (sk_test_...)")
        self.real_stripe = bool(stripe_key)
        try:
            return self._start(stripe_key)
        except BaseException:
            self.stop()  # what started before the failure must not outlive it
            raise

    def _start(self, stripe_key: str) -> LocalStack:
        # The API's port first: it is the one most often taken (another ./dev run).
        self.server = _listen(
            "the API", "--port", self.host, self.port,
            lambda: ThreadingHTTPServer((self.host, self.port), BaseHTTPRequestHandler),
        )  # fmt: skip
        self.server.daemon_threads = True
        self.aws = _listen(
            "moto, the local AWS", "--aws-port", "127.0.0.1", self.aws_port,
            lambda: LocalAws().start(port=self.aws_port, host=self.host),
        )  # fmt: skip
        os.environ.update(aws_environment(self.aws.url))
        for name, default in DEFAULT_TABLES.items():
            os.environ.setdefault(name, default)
        publishable_key = os.environ.get("STRIPE_PUBLISHABLE_KEY", "").strip()
        stripe_js_url = STRIPE_JS_URL
        if self.real_stripe:
            os.environ.pop("STRIPE_API_BASE", None)
        else:
            self.emulator = _listen(
                "the Stripe emulator", "--stripe-port", self.host, self.stripe_port,
                lambda: StripeEmulator().start(host=self.host, port=self.stripe_port),
            )  # fmt: skip
            os.environ["STRIPE_API_BASE"] = self.emulator.url
            stripe_key, publishable_key = EMULATOR_STRIPE_KEY, EMULATOR_PUBLISHABLE_KEY
            stripe_js_url = f"{self.emulator.url}/v3/"  # the emulator's stand-in for Stripe.js
        os.environ.setdefault("CORS_ALLOWED_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000")
        create_tables({name: os.environ[name] for name in DEFAULT_TABLES}, self.aws.url)
        os.environ["USAGE_PLAN_ID"] = create_usage_plan(self.aws.url)
        os.environ.setdefault("EVENT_BUS_NAME", "stripe-checkout-events-dev")
        create_event_bus(os.environ["EVENT_BUS_NAME"], self.aws.url)
        # What a booking system's rule would do: every booking event lands in this queue.
        self.events_queue_url = capture_bus(os.environ["EVENT_BUS_NAME"], EVENTS_QUEUE, self.aws.url)

        shown_host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host
        self.base_url = f"http://{shown_host}:{self.server.server_address[1]}"
        self.api_key = onboard_demo_company(self.base_url, stripe_key)
        if not self.real_stripe:
            # Real Stripe cannot reach this machine (use `stripe listen`, see the README);
            # the emulator can, so it delivers its signed events to the local webhook route.
            register_demo_webhook(f"{self.base_url}{WEBHOOK_ROUTE}{DEMO_COMPANY_ID}")

        # Imported only now: the handlers build their clients from the environment above.
        api = importlib.import_module("handlers.checkout_api")
        webhooks = importlib.import_module("handlers.stripe_webhook")

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            # One function per route, as the template deploys them.
            module = webhooks if str(event["path"]).startswith(WEBHOOK_ROUTE) else api
            result: dict[str, Any] = module.lambda_handler(event, LocalContext())
            return result

        pages = Pages(openapi_document(), demo_config(stripe_js_url, publishable_key, self.api_key))
        aws_url = self.aws.url
        self.server.RequestHandlerClass = _handler_class(
            invoke, pages, lambda value: api_key_id(value, aws_url)
        )
        threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True).start()
        self._serving = True
        return self

    def stop(self) -> None:
        """Stop everything `start()` started."""
        if self.server is not None:
            if self._serving:
                self.server.shutdown()
            self.server.server_close()
        if self.emulator is not None:
            self.emulator.stop()
        if self.aws is not None:
            self.aws.stop()

    def banner(self) -> str:
        """What a developer needs to start: URLs, the curl, the admin environment."""
        stripe = (
            "real Stripe test mode (STRIPE_SECRET_KEY)"
            if self.real_stripe
            else f"emulator at {self.emulator.url if self.emulator else ''}"
        )
        assert self.aws is not None
        # The reconciler (checkout-admin reconcile) calls Stripe: the emulator, unless real.
        stripe_base = (
            "" if self.real_stripe or self.emulator is None else f" STRIPE_API_BASE={self.emulator.url}"
        )
        return "\n".join(
            [
                f"Checkout API on {self.base_url}  (Stripe: {stripe}; AWS: moto at {self.aws.url})",
                f"Demo booking:  {self.base_url}/demo  (pay hosted or embedded, see the booking confirmed)",
                f"Swagger UI:    {self.base_url}/docs  (document: {self.base_url}/openapi.json)",
                f"Demo company:  {DEMO_COMPANY_ID}  (articles 1/42, 1/43, 2/7 in SEK)",
                f"Demo API key:  {self.api_key}  (bound to the demo company only)",
                "",
                "Try it (run twice: the second call expires the first session):",
                f"  {curl_command(self.base_url, self.api_key)}",
                "",
                "checkout-admin against this stack, from another shell:",
                f"  export AWS_ENDPOINT_URL={self.aws.url} AWS_DEFAULT_REGION=eu-north-1 "
                "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
                f"USAGE_PLAN_ID={os.environ['USAGE_PLAN_ID']}{stripe_base}",
                "  .venv/bin/checkout-admin sessions "
                f"--company-id {DEMO_COMPANY_ID} --reference demo-booking-1",
                "  RECONCILE_GRACE_MINUTES=0 .venv/bin/checkout-admin reconcile   (a reconciler pass)",
                "Booking events (Checkout Paid, ...) published to the bus land in a queue:",
                f"  aws sqs receive-message --queue-url {self.events_queue_url} --max-number-of-messages 10",
                "",
                "Ctrl-C stops everything.",
            ]
        )


def main(argv: list[str] | None = None) -> None:
    """Run the local API until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for sam local in Docker)"
    )
    parser.add_argument("--port", type=int, default=3000, help="API port (default 3000)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto port (default 4566)")
    parser.add_argument("--stripe-port", type=int, default=12111, help="Stripe emulator port (default 12111)")
    args = parser.parse_args(argv)
    stack = LocalStack(args.host, args.port, args.aws_port, args.stripe_port).start()  # PortInUse exits 1
    print(stack.banner(), flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    # Explicit handlers: a process started in the background may inherit SIGINT as
    # ignored, and then Python would never raise KeyboardInterrupt.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stopped.wait()
    finally:
        stack.stop()
        print(f"{PROG}: stopped.", flush=True)


if __name__ == "__main__":
    main()
