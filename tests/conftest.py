"""Shared fixtures: moto over HTTP, the Stripe emulator, an onboarded company, the handler.

One local AWS and one emulator serve the whole session; tests stay independent by
giving every company (and so every table key) a fresh GUID.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import boto3
import pytest

from localdev.apigw import LocalContext, response_headers, rest_event
from localdev.aws_stack import (
    REGION,
    LocalAws,
    aws_environment,
    capture_bus,
    create_event_bus,
    create_tables,
    create_usage_plan,
)
from localdev.stripe_emulator import StripeEmulator

ROUTE = "/payment/stripe/v1/checkout"
TABLES = {
    "COMPANIES_TABLE_NAME": "test-checkout-companies",
    "SESSIONS_TABLE_NAME": "test-checkout-sessions",
    "IDEMPOTENCY_TABLE_NAME": "test-checkout-idempotency",
}
EVENT_BUS = "test-booking-events"
STRIPE_KEY = "sk_test_51TestKeyForTheEmulatorOnly000000000000"
ALLOWED_ORIGIN = "https://booking.example.com"
SITE = "https://booking.example.com"

ROOT = Path(__file__).resolve().parent.parent

# What a leaked secret looks like: Stripe keys, webhook secrets, client secrets.
SECRET_PATTERN = re.compile(
    r"(sk|rk)_(test|live)_[A-Za-z0-9]{6,}|whsec_[A-Za-z0-9]+|(cs|pi|seti)_[A-Za-z0-9_]*_secret_[A-Za-z0-9]+"
)


@dataclass
class Stack:
    """The running stand-ins and the environment that points at them."""

    aws: LocalAws
    emulator: StripeEmulator
    env: dict[str, str]
    events_queue_url: str = ""
    _events_seen: list[dict[str, Any]] = field(default_factory=list)

    def booking_events(self, company_id: str | None = None) -> list[dict[str, Any]]:
        """Every booking event published so far (optionally of one company), oldest first,
        as a consumer's SQS queue received it: {"detail-type": ..., "detail": {...}}."""
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=self.aws.url)
        while True:
            messages = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                self._events_seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [e for e in self._events_seen if company_id is None or e["detail"]["CompanyId"] == company_id]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    aws = LocalAws().start()
    emulator = StripeEmulator().start()
    env = {
        **aws_environment(aws.url),
        **TABLES,
        "STRIPE_API_BASE": emulator.url,
        "STRIPE_TIMEOUT_SECONDS": "5",
        "CORS_ALLOWED_ORIGINS": f"{ALLOWED_ORIGIN},http://localhost:3000",
        "POWERTOOLS_METRICS_NAMESPACE": "CheckoutTests",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "EVENT_BUS_NAME": EVENT_BUS,
    }
    patch = pytest.MonkeyPatch()
    for name, value in env.items():
        patch.setenv(name, value)
    create_tables(TABLES, aws.url)
    env["USAGE_PLAN_ID"] = create_usage_plan(aws.url)
    patch.setenv("USAGE_PLAN_ID", env["USAGE_PLAN_ID"])
    create_event_bus(EVENT_BUS, aws.url)
    queue_url = capture_bus(EVENT_BUS, "test-booking-events-consumer", aws.url)
    yield Stack(aws, emulator, env, queue_url)
    patch.undo()
    emulator.stop()
    aws.stop()


@pytest.fixture(scope="session")
def handler_module(stack: Stack) -> ModuleType:
    """The Lambda module, imported only once the environment points at the stand-ins."""
    return importlib.import_module("handlers.checkout_api")


@dataclass
class Reply:
    """A handler response, decoded."""

    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


# Status codes the handler answered during the current test (see no_unexpected_500).
ANSWERED: list[int] = []
# The API key id onboard() bound to each company (canonical GUID), which Api sends by default.
BOUND_KEYS: dict[str, str] = {}


class _CompanysKey:
    """Api's default: the key bound to the body's CompanyId, as its frontend would send."""


COMPANYS_KEY = _CompanysKey()


_GUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def _key_for(*texts: str | None) -> str | None:
    """The key bound to the first onboarded company whose id appears in the request, in any
    spelling and wherever it is sent (JSON or form body, query string)."""
    for text in texts:
        for found in _GUID.findall(unquote(text or "")):
            key = BOUND_KEYS.get(str(uuid.UUID(found)))
            if key is not None:
                return key
    return None


@dataclass
class Api:
    """Sends API Gateway REST events through the real handler."""

    module: ModuleType

    def send(
        self,
        method: str,
        path: str = ROUTE,
        body: Any = None,
        *,
        query: str = "",
        headers: dict[str, str] | None = None,
        raw: str | None = None,
        api_key_id: str | _CompanysKey | None = COMPANYS_KEY,
    ) -> Reply:
        """One request; it carries the API key id of the body's company unless `api_key_id` says
        otherwise (None: a request without one, as `sam local invoke` sends)."""
        text = raw if raw is not None else (None if body is None else json.dumps(body))
        key_id = _key_for(text, query) if isinstance(api_key_id, _CompanysKey) else api_key_id
        event = rest_event(
            method,
            path,
            text,
            query=query,
            headers=headers or {"Content-Type": "application/json"},
            api_key_id=key_id,
        )
        return self.invoke(event)

    def invoke(self, event: dict[str, Any]) -> Reply:
        response = self.module.lambda_handler(event, LocalContext())
        ANSWERED.append(response["statusCode"])
        return Reply(response["statusCode"], response_headers(response), response.get("body") or "")

    def post(self, body: Any, **kwargs: Any) -> Reply:
        return self.send("POST", ROUTE, body, **kwargs)


@pytest.fixture
def api(handler_module: ModuleType) -> Api:
    return Api(handler_module)


def admin(*argv: str, stdin: str = "") -> dict[str, Any]:
    """Run checkout-admin in-process and return its JSON output."""
    from checkout.admin import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv), stdin=io.StringIO(stdin)) == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


@dataclass
class Company:
    """A company onboarded through checkout-admin, with a small catalogue."""

    company_id: str
    stripe_account: str | None = None
    api_key_id: str = ""
    articles: dict[tuple[int, int], tuple[str, int, str]] = field(default_factory=dict)

    def request(self, reference: str | None = None, **overrides: Any) -> dict[str, Any]:
        """A valid request body for this company (the published sample request with real values)."""
        body: dict[str, Any] = {
            "CompanyId": self.company_id,
            "CountryCode": "SE",
            "Articles": [{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}],
            "InternalReferenceId": reference or f"booking-{uuid.uuid4().hex[:8]}",
            "ConfirmationUrl": f"{SITE}/booking/confirmed",
            "CancelUrl": f"{SITE}/booking/cancelled",
            "UiMode": "hosted",
        }
        body.update(overrides)
        return body

    def sessions(self, reference: str) -> dict[str, Any]:
        """What `checkout-admin sessions` shows for a reference."""
        return admin("sessions", "--company-id", self.company_id, "--reference", reference)


def onboard(
    *,
    stripe_account: str | None = None,
    key: str | None = STRIPE_KEY,
    prefixes: tuple[str, ...] = (f"{SITE}/",),
    confirmation_url: str | None = f"{SITE}/booking/done",
    extra: tuple[str, ...] = (),
) -> Company:
    """Onboard a fresh company with two SEK articles, one EUR article and an API key bound to it."""
    company = Company(str(uuid.uuid4()), stripe_account)
    argv = ["company", "put", "--company-id", company.company_id]
    for prefix in prefixes:
        argv += ["--allowed-url-prefix", prefix]
    if confirmation_url:
        argv += ["--confirmation-url", confirmation_url]
    if stripe_account:
        argv += ["--stripe-account", stripe_account]
    if key:
        argv.append("--stripe-secret-key-stdin")
    admin(*argv, *extra, stdin=key or "")
    company.api_key_id = admin("apikey", "create", "--company-id", company.company_id)["api_key_id"]
    BOUND_KEYS[company.company_id] = company.api_key_id
    for (type_id, article_id), (name, amount, currency) in {
        (1, 42): ("Haircut 45 min", 45000, "SEK"),
        (1, 43): ("Beard trim", 15000, "SEK"),
        (2, 7): ("Gift card", 5000, "EUR"),
    }.items():
        admin(
            "article", "put", "--company-id", company.company_id,
            "--article-type-id", str(type_id), "--article-id", str(article_id),
            "--name", name, "--unit-amount", str(amount), "--currency", currency,
        )  # fmt: skip
        company.articles[(type_id, article_id)] = (name, amount, currency.lower())
    return company


@pytest.fixture
def company(stack: Stack) -> Company:
    return onboard()


@pytest.fixture(autouse=True)
def no_secrets_in_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Every test's stdout/stderr (logs, EMF, child processes) is free of secrets."""
    yield
    out, err = capfd.readouterr()
    leaked = SECRET_PATTERN.findall(out + err)
    assert not leaked, "a secret reached the output"
    # Give the output back so pytest still shows it for a failing test.
    print(out, end="")


@pytest.fixture(autouse=True)
def no_unexpected_500(request: pytest.FixtureRequest) -> Iterator[None]:
    """A 500 means a bug: only a test that injects one on purpose may see it."""
    ANSWERED.clear()
    yield
    if request.node.get_closest_marker("injects_bug") is None:
        assert 500 not in ANSWERED, "the handler answered 500"


class LocalApiProcess:
    """`./dev run` in a child process on free ports, as a developer starts it.

    Its output is read continuously (a full pipe would stall the server) and kept for
    assertions; `banner` is what it printed up to "Ctrl-C stops everything".
    """

    def __init__(self, *extra_args: str) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "STRIPE_")) and not k.endswith("_TABLE_NAME")
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localdev.local_api", "--port", "0", "--aws-port", "0", "--stripe-port", "0",
             *extra_args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._lines: list[str] = []
        self._banner_done = threading.Event()
        self._reader = threading.Thread(target=self._read, name="local-api-output", daemon=True)
        self._reader.start()
        if not self._banner_done.wait(timeout=120):
            self.stop()
        self.banner = "".join(self._lines)
        assert "Ctrl-C stops everything" in self.banner, self.banner

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            if line.startswith("Ctrl-C stops everything"):
                self._banner_done.set()
        self._banner_done.set()

    def url(self, label: str) -> str:
        """A URL from the banner: "Checkout API on", "emulator at" or "moto at"."""
        found = re.search(rf"{label} (http://[^\s;)]+)", self.banner)
        assert found, f"{label!r} not in the banner"
        return found.group(1)

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(self._lines)

    def admin(self, *argv: str) -> dict[str, Any]:
        """checkout-admin against this stack, as the banner tells a developer to run it."""
        env = {**os.environ, "AWS_ENDPOINT_URL": self.url("moto at"), "AWS_DEFAULT_REGION": "eu-north-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "COMPANIES_TABLE_NAME": "checkout-companies-dev", "SESSIONS_TABLE_NAME": "checkout-sessions-dev"}  # fmt: skip
        command = [str(Path(sys.executable).parent / "checkout-admin"), *argv]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def admin_events(self) -> list[dict[str, Any]]:
        """The booking events the local run published (its queue), drained."""
        sqs = boto3.client(
            "sqs", region_name=REGION, endpoint_url=self.url("moto at"),
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        queue = sqs.get_queue_url(QueueName="local-booking-events")["QueueUrl"]
        found: list[dict[str, Any]] = []
        for _ in range(5):
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            found += [json.loads(m["Body"]) for m in messages]
            for message in messages:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            if not messages:
                break
        return found

    def stop(self, wait_seconds: float = 30) -> int:
        """Ctrl-C, as a developer stops it; killed if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + wait_seconds
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return code


def assert_invariant(stack: Stack, company: Company, reference: str) -> dict[str, Any]:
    """The contract's invariant for one reference, at Stripe and in the registry: at most
    one open session, the current one; every created session recorded, in its state."""
    at_stripe = {
        s["id"]: s["status"]
        for s in stack.emulator.sessions(company.stripe_account)
        if s["client_reference_id"] == reference and s["metadata"]["CompanyId"] == company.company_id
    }
    record = company.sessions(reference)
    open_ids = [sid for sid, status in at_stripe.items() if status == "open"]
    assert len(open_ids) <= 1, at_stripe
    if open_ids:
        assert open_ids == [record["current_session_id"]], (at_stripe, record)
    assert {s["session_id"]: s["status"] for s in record["sessions"]} == at_stripe, (at_stripe, record)
    return record
