"""`checkout-local` (`./dev run`): the API on 127.0.0.1, as `sam local start-api` would serve it.

Needs no Docker, no AWS account and no Stripe account. One command starts:

- moto's DynamoDB and Secrets Manager (tables created from template.yaml),
- the Stripe Checkout emulator, unless `STRIPE_SECRET_KEY` holds a Stripe *test* key,
  in which case the function talks to real Stripe test mode,
- a demo company with catalogued articles and an API key bound to it, onboarded through
  `checkout-admin` (the key in a usage plan of moto's API Gateway, as on a stage),
- an HTTP server that turns each request into the API Gateway REST proxy event the
  deployed function receives, and calls the real handler with it. Like API Gateway, it
  refuses an unknown `x-api-key` and hands the function the id of a known one.

It prints a ready-to-paste `curl`, and Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.resources
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import urlsplit

from localdev.apigw import LocalContext, response_body, response_headers, rest_event
from localdev.aws_stack import LocalAws, api_key_id, aws_environment, create_tables, create_usage_plan
from localdev.stripe_emulator import StripeEmulator

DEMO_COMPANY_ID = "6f2b0d4e-5c1a-4a8e-9a51-2f3c8d9e7b10"
DEMO_ARTICLES = [
    (1, 42, "Haircut 45 min", 45000, "SEK"),
    (1, 43, "Beard trim", 15000, "SEK"),
    (2, 7, "Gift card 500 kr", 50000, "SEK"),
]
# The names checkout-admin uses by default (STAGE=dev), so it needs no table settings here.
DEFAULT_TABLES = {
    "COMPANIES_TABLE_NAME": "checkout-companies-dev",
    "SESSIONS_TABLE_NAME": "checkout-sessions-dev",
}
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# API Gateway's answer to an unknown key (the template's INVALID_API_KEY gateway response).
INVALID_API_KEY = (
    b'{"ResponseStatus":{"ErrorCode":"Forbidden","Message":"A valid x-api-key header is required."}}'
)
DEMO_PAGE = """<!doctype html><title>Checkout demo</title>
<h1>{title}</h1><p>This page stands in for the booking site's {what} page.</p>"""


def sample_request(base_url: str, reference: str = "demo-booking-1") -> dict[str, Any]:
    """The seed's sample request, with real values for the demo company."""
    return {
        "CompanyId": DEMO_COMPANY_ID,
        "CountryCode": "SE",
        "Articles": [{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}],
        "InternalReferenceId": reference,
        "ConfirmationUrl": f"{base_url}/demo/confirmed",
        "CancelUrl": f"{base_url}/demo/cancelled",
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
    checkout-admin; return the key's value (for `x-api-key`)."""
    from checkout.admin import main as admin

    def run(*argv: str, stdin: str = "") -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            admin(list(argv), stdin=io.StringIO(stdin))
        return out.getvalue()

    run(
        "company", "put", "--company-id", DEMO_COMPANY_ID,
        "--allowed-url-prefix", f"{base_url}/",
        "--allowed-url-prefix", "http://localhost:3000/",
        "--allowed-url-prefix", "https://booking.example.com/",
        "--confirmation-url", f"{base_url}/demo/confirmed",
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


def _handler_class(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], docs: str, key_id: Callable[[str], str | None]
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
            if self.command == "GET" and parts.path in {"/docs", "/docs/"}:
                self._reply(200, {"Content-Type": "text/html; charset=utf-8"}, docs.encode())
                return
            if self.command == "GET" and parts.path in {"/demo/confirmed", "/demo/cancelled"}:
                what = "confirmation" if parts.path.endswith("confirmed") else "cancel"
                page = DEMO_PAGE.format(title=f"Demo {what} page", what=what)
                self._reply(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())
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
            response = invoke(event)
            self._reply(response["statusCode"], response_headers(response), response_body(response))

        # Every method goes to the handler, which answers 405/404 as API Gateway + Lambda would.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    return Handler


def _swagger_page(module: ModuleType) -> str:
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    from localdev.openapi import openapi_document

    assets = importlib.resources.files("aws_lambda_powertools.event_handler.openapi.swagger_ui")
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    return generate_swagger_html(
        spec=openapi_document(module.app),
        swagger_js=js,
        swagger_css=css,
        swagger_base_url="",
        oauth2_config=None,
        persist_authorization=False,
    )


class LocalStack:
    """Everything `checkout-local` runs; `start()` then `stop()` (or a `with` block)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 3000, aws_port: int = 4566, stripe_port: int = 12111
    ):
        self.host, self.port, self.aws_port, self.stripe_port = host, port, aws_port, stripe_port
        self.aws: LocalAws | None = None
        self.emulator: StripeEmulator | None = None
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""
        self.api_key = ""
        self.real_stripe = False

    def start(self) -> LocalStack:
        """Start the stand-ins, onboard the demo company and serve the API."""
        stripe_key = os.environ.get("STRIPE_SECRET_KEY", "").strip()
        if stripe_key and not stripe_key.startswith(("sk_test_", "rk_test_")):
            raise SystemExit("checkout-local: STRIPE_SECRET_KEY must be a Stripe test key (sk_test_...)")
        self.real_stripe = bool(stripe_key)
        self.aws = LocalAws().start(port=self.aws_port, host=self.host)
        os.environ.update(aws_environment(self.aws.url))
        for name, default in DEFAULT_TABLES.items():
            os.environ.setdefault(name, default)
        if self.real_stripe:
            os.environ.pop("STRIPE_API_BASE", None)
        else:
            self.emulator = StripeEmulator().start(host=self.host, port=self.stripe_port)
            os.environ["STRIPE_API_BASE"] = self.emulator.url
            stripe_key = "sk_test_51LocalEmulatorKey0000000000"
        os.environ.setdefault("CORS_ALLOWED_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000")
        create_tables({name: os.environ[name] for name in DEFAULT_TABLES}, self.aws.url)
        os.environ["USAGE_PLAN_ID"] = create_usage_plan(self.aws.url)

        self.server = ThreadingHTTPServer((self.host, self.port), BaseHTTPRequestHandler)
        self.server.daemon_threads = True
        shown_host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host
        self.base_url = f"http://{shown_host}:{self.server.server_address[1]}"
        self.api_key = onboard_demo_company(self.base_url, stripe_key)

        # Imported only now: the handler builds its clients from the environment above.
        module = importlib.import_module("handlers.checkout_api")

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = module.lambda_handler(event, LocalContext())
            return result

        aws_url = self.aws.url
        self.server.RequestHandlerClass = _handler_class(
            invoke, _swagger_page(module), lambda value: api_key_id(value, aws_url)
        )
        threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop everything `start()` started."""
        if self.server is not None:
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
        return "\n".join(
            [
                f"Checkout API on {self.base_url}  (Stripe: {stripe}; AWS: moto at {self.aws.url})",
                f"Swagger UI:    {self.base_url}/docs",
                f"Demo company:  {DEMO_COMPANY_ID}  (articles 1/42, 1/43, 2/7 in SEK)",
                f"Demo API key:  {self.api_key}  (bound to the demo company only)",
                "",
                "Try it (run twice: the second call expires the first session):",
                f"  {curl_command(self.base_url, self.api_key)}",
                "",
                "checkout-admin against this stack, from another shell:",
                f"  export AWS_ENDPOINT_URL={self.aws.url} AWS_DEFAULT_REGION=eu-north-1 "
                "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
                f"USAGE_PLAN_ID={os.environ['USAGE_PLAN_ID']}",
                "  .venv/bin/checkout-admin sessions "
                f"--company-id {DEMO_COMPANY_ID} --reference demo-booking-1",
                "",
                "Ctrl-C stops everything.",
            ]
        )


def main(argv: list[str] | None = None) -> None:
    """Run the local API until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="checkout-local", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for sam local in Docker)"
    )
    parser.add_argument("--port", type=int, default=3000, help="API port (default 3000)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto port (default 4566)")
    parser.add_argument("--stripe-port", type=int, default=12111, help="Stripe emulator port (default 12111)")
    args = parser.parse_args(argv)
    stack = LocalStack(args.host, args.port, args.aws_port, args.stripe_port).start()
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
        print("checkout-local: stopped.", flush=True)


if __name__ == "__main__":
    main()
