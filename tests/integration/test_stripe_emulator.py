"""The emulator is as strict as Stripe where the service depends on it.

Driven by the real stripe-python client over HTTP, so what is checked here is also how
stripe-python encodes our parameters, and webhooks are verified with stripe-python's
own `construct_event`, so the emulator's signatures are checked by the library the
service uses.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from localdev.stripe_emulator import StripeEmulator
from tests.conftest import STRIPE_KEY

VERSION = "2026-10-28.endive"
RETRY_DELAYS = (0.05, 0.1, 0.2)
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def emulator() -> Iterator[StripeEmulator]:
    emulator = StripeEmulator(retry_delays=RETRY_DELAYS).start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def fresh(emulator: StripeEmulator) -> None:
    # Endpoints of earlier tests would otherwise receive (and retry) this test's events.
    emulator.reset()


def client_for(emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, stripe_version=VERSION, base_addresses={"api": emulator.url})


@pytest.fixture
def client(emulator: StripeEmulator) -> stripe.StripeClient:
    return client_for(emulator)


@dataclass
class Clock:
    """Stripe's clock, moved by the test."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(clock: Clock) -> Iterator[StripeEmulator]:
    """An emulator of its own whose clock the test moves."""
    emulator = StripeEmulator(clock, retry_delays=RETRY_DELAYS).start()
    yield emulator
    emulator.stop()


@dataclass
class Receiver:
    """A webhook endpoint: records each POST and answers with the next scripted status (then 200)."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def make() -> Receiver:
        receiver = Receiver()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def receiver(make_receiver: Callable[[], Receiver]) -> Receiver:
    return make_receiver()


def endpoint(
    client: stripe.StripeClient,
    url: str,
    events: tuple[str, ...] = ("*",),
    account: str | None = None,
    **extra: Any,
) -> stripe.WebhookEndpoint:
    options: Any = {"stripe_account": account} if account else {}
    return client.v1.webhook_endpoints.create(
        params=params_of(url=url, enabled_events=list(events), **extra), options=options
    )


def session_for(client: stripe.StripeClient, account: str | None = None, **overrides: Any) -> str:
    options: Any = {"stripe_account": account} if account else {}
    return client.v1.checkout.sessions.create(params=params(**overrides), options=options).id


def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """GET (or POST a form to) a page without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    data = None if form is None else urllib.parse.urlencode(form).encode()
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def params(**overrides: Any) -> Any:  # Any: the stripe TypedDicts would forbid our deliberate mistakes
    base: dict[str, Any] = {
        "mode": "payment",
        "ui_mode": "hosted_page",
        "success_url": "https://shop.example/ok",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {"currency": "sek", "unit_amount": 1000, "product_data": {"name": "A"}},
            }
        ],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def params_of(**values: Any) -> Any:
    return values


def rejected(client: stripe.StripeClient, **overrides: Any) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params(**overrides))
    assert caught.value.http_status == 400
    return caught.value


def test_create_retrieve_list_and_expire(client: stripe.StripeClient) -> None:
    created = client.v1.checkout.sessions.create(params=params(client_reference_id="ref-1"))

    assert created.status == "open" and created.url and created.client_secret is None
    assert created.payment_intent is None
    assert client.v1.checkout.sessions.retrieve(created.id).id == created.id
    assert created.id in [s.id for s in client.v1.checkout.sessions.list(params={"status": "open"}).data]
    assert client.v1.checkout.sessions.expire(created.id).status == "expired"


def test_embedded_page_has_a_client_secret_and_no_url(client: stripe.StripeClient) -> None:
    created = client.v1.checkout.sessions.create(
        params=params(ui_mode="embedded_page", success_url=None, return_url="https://shop.example/r")
    )

    assert created.url is None
    assert created.client_secret and created.client_secret.startswith(f"{created.id}_secret_")


def test_unknown_parameters_are_rejected(client: stripe.StripeClient) -> None:
    error = rejected(client, colour="blue")

    assert error.param == "colour" and error.code == "parameter_unknown"


def test_unknown_nested_parameters_are_rejected(client: stripe.StripeClient) -> None:
    items = [
        {
            "quantity": 1,
            "price_data": {"currency": "sek", "unit_amount": 1, "product_data": {"name": "A", "x": 1}},
        }
    ]

    assert rejected(client, line_items=items).param == "line_items[0][price_data][product_data][x]"


@pytest.mark.parametrize("mode", ["hosted", "embedded", "popup"])
def test_retired_and_unknown_ui_modes_are_rejected(client: stripe.StripeClient, mode: str) -> None:
    assert rejected(client, ui_mode=mode).param == "ui_mode"


def test_cancel_url_with_embedded_page_is_rejected(client: stripe.StripeClient) -> None:
    error = rejected(
        client, ui_mode="embedded_page", success_url=None, return_url="https://s/r", cancel_url="https://s/c"
    )

    assert error.param == "cancel_url"


def test_embedded_page_needs_a_return_url(client: stripe.StripeClient) -> None:
    assert rejected(client, ui_mode="embedded_page", success_url=None).param == "return_url"


def test_return_url_with_hosted_page_is_rejected(client: stripe.StripeClient) -> None:
    assert rejected(client, return_url="https://s/r").param == "return_url"


def test_payment_method_types_is_no_longer_accepted(client: stripe.StripeClient) -> None:
    assert rejected(client, payment_method_types=["card"]).param == "payment_method_types"


def test_more_than_100_line_items_are_rejected(client: stripe.StripeClient) -> None:
    item = {"quantity": 1, "price_data": {"currency": "sek", "unit_amount": 1, "product_data": {"name": "A"}}}

    assert rejected(client, line_items=[item] * 101).param == "line_items"


def test_mixed_currencies_are_rejected(client: stripe.StripeClient) -> None:
    items = [
        {"quantity": 1, "price_data": {"currency": c, "unit_amount": 100, "product_data": {"name": "A"}}}
        for c in ("sek", "eur")
    ]

    assert rejected(client, line_items=items).param == "line_items"


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(51)}, "metadata"),
        ({"k" * 41: "v"}, "metadata"),
        ({"a[b]": "v"}, "metadata"),
        ({"k": "v" * 501}, "metadata[k]"),
    ],
)
def test_metadata_limits(client: stripe.StripeClient, metadata: dict[str, str], param: str) -> None:
    assert rejected(client, metadata=metadata).param == param


def test_client_reference_id_is_at_most_200_characters(client: stripe.StripeClient) -> None:
    assert rejected(client, client_reference_id="r" * 201).param == "client_reference_id"


def test_list_cannot_filter_by_client_reference_id(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.list(params=params_of(client_reference_id="ref"))

    assert caught.value.code == "parameter_unknown"


def test_only_open_sessions_can_be_expired(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    created = client.v1.checkout.sessions.create(params=params())
    emulator.complete(created.id)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.expire(created.id)

    assert "has a status of `complete`" in str(caught.value.user_message)
    completed = client.v1.checkout.sessions.retrieve(created.id)
    assert completed.status == "complete" and completed.payment_status == "paid"
    assert str(completed.payment_intent).startswith("pi_")


def test_same_idempotency_key_and_parameters_replays_the_same_session(client: stripe.StripeClient) -> None:
    first = client.v1.checkout.sessions.create(params=params(), options={"idempotency_key": "k-1"})
    again = client.v1.checkout.sessions.create(params=params(), options={"idempotency_key": "k-1"})

    assert again.id == first.id


def test_same_idempotency_key_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    client.v1.checkout.sessions.create(params=params(), options={"idempotency_key": "k-2"})

    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=params(locale="sv"), options={"idempotency_key": "k-2"})


def test_sessions_are_namespaced_by_stripe_account(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    on_connect = client.v1.checkout.sessions.create(
        params=params(),
        options={"stripe_account": "acct_1Salon"},
    )

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.retrieve(on_connect.id)
    assert caught.value.http_status == 404
    assert client.v1.checkout.sessions.retrieve(on_connect.id, options={"stripe_account": "acct_1Salon"}).id
    assert on_connect.id in [s["id"] for s in emulator.sessions("acct_1Salon")]


def test_an_invalid_or_revoked_key_is_401(emulator: StripeEmulator) -> None:
    for key in ("pk_test_publishable", "sk_live_notallowedhere"):
        client = stripe.StripeClient(key, stripe_version=VERSION, base_addresses={"api": emulator.url})
        with pytest.raises(stripe.AuthenticationError):
            client.v1.checkout.sessions.list()


def test_the_api_version_is_pinned(emulator: StripeEmulator) -> None:
    client = stripe.StripeClient(
        STRIPE_KEY, stripe_version="2024-06-20", base_addresses={"api": emulator.url}
    )

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.list()


def test_injected_faults_fire_once_per_count(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    emulator.inject_fault("GET", r"^/v1/checkout/sessions$", 429)

    with pytest.raises(stripe.RateLimitError):
        client.v1.checkout.sessions.list()
    assert client.v1.checkout.sessions.list().data is not None


# -- line items and retrieve ---------------------------------------------------------------

TWO_ITEMS = [
    {
        "quantity": 2,
        "price_data": {"currency": "sek", "unit_amount": 45000, "product_data": {"name": "Haircut"}},
    },
    {
        "quantity": 1,
        "price_data": {"currency": "sek", "unit_amount": 15000, "product_data": {"name": "Beard"}},
    },
]


def test_line_items_are_stored_and_listed_as_stripe_lists_them(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session_id = session_for(client, line_items=TWO_ITEMS)

    listed = client.v1.checkout.sessions.line_items.list(session_id)

    assert [(i.description, i.quantity, i.amount_total) for i in listed.data] == [
        ("Haircut", 2, 90000),
        ("Beard", 1, 15000),
    ]
    assert listed.data[0].price and listed.data[0].price.unit_amount == 45000
    assert emulator.line_items(session_id) == [
        {"name": "Haircut", "quantity": 2, "unit_amount": 45000, "currency": "sek", "amount_total": 90000},
        {"name": "Beard", "quantity": 1, "unit_amount": 15000, "currency": "sek", "amount_total": 15000},
    ]


def test_retrieve_expands_line_items_and_the_payment_intent(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session_id = session_for(client, line_items=TWO_ITEMS)
    emulator.complete(session_id)

    session = client.v1.checkout.sessions.retrieve(
        session_id, params={"expand": ["line_items", "payment_intent"]}
    )

    assert session.line_items and len(session.line_items.data) == 2
    intent: Any = session.payment_intent
    assert intent.object == "payment_intent" and intent.status == "succeeded" and intent.amount == 105000


def test_an_expansion_stripe_does_not_offer_is_rejected(client: stripe.StripeClient) -> None:
    session_id = session_for(client)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.retrieve(session_id, params={"expand": ["colour"]})

    assert caught.value.param == "expand"


# -- payment outcomes ----------------------------------------------------------------------


def test_a_card_payment_completes_paid_with_the_payers_email(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session_id = session_for(client)
    assert client.v1.checkout.sessions.retrieve(session_id).customer_details is None

    emulator.complete(session_id, email="kim@example.com")

    session = client.v1.checkout.sessions.retrieve(session_id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert str(session.payment_intent).startswith("pi_")
    assert session.customer_details and session.customer_details.email == "kim@example.com"
    assert [e["type"] for e in emulator.events()] == ["checkout.session.completed"]


def test_a_delayed_payment_completes_unpaid_until_the_bank_settles_it(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session_id = session_for(client)

    completed = emulator.complete(session_id, delayed=True)
    intent = str(completed["payment_intent"])
    assert client.v1.payment_intents.retrieve(intent).status == "processing"
    settled = emulator.settle(session_id, succeeded=True)

    assert (completed["status"], completed["payment_status"]) == ("complete", "unpaid")
    assert str(completed["payment_intent"]).startswith("pi_")
    assert settled["payment_status"] == "paid"
    assert client.v1.payment_intents.retrieve(intent).status == "succeeded"
    assert client.v1.checkout.sessions.retrieve(session_id).payment_status == "paid"
    events = emulator.events()
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]
    assert events[0]["data"]["object"]["payment_status"] == "unpaid"  # the snapshot of that moment


def test_a_failed_bank_debit_stays_unpaid(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    session_id = session_for(client)
    emulator.complete(session_id, delayed=True)

    emulator.settle(session_id, succeeded=False)

    assert client.v1.checkout.sessions.retrieve(session_id).payment_status == "unpaid"
    assert emulator.events()[-1]["type"] == "checkout.session.async_payment_failed"
    with pytest.raises(ValueError):
        emulator.settle(session_id, succeeded=True)  # the bank answers once


def test_only_a_completed_unpaid_session_can_be_settled(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    open_id, paid_id = session_for(client), session_for(client)
    emulator.complete(paid_id)

    for session_id in (open_id, paid_id):
        with pytest.raises(ValueError):
            emulator.settle(session_id, succeeded=True)


def test_expiry_by_stripe_and_by_the_api_both_emit_expired(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    by_stripe, by_api = session_for(client), session_for(client)

    assert emulator.expire(by_stripe)["status"] == "expired"
    client.v1.checkout.sessions.expire(by_api, options={"idempotency_key": "expire-1"})

    events = emulator.events()
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("checkout.session.expired", by_stripe),
        ("checkout.session.expired", by_api),
    ]
    assert events[0]["request"] == {"id": None, "idempotency_key": None}
    assert events[1]["request"]["idempotency_key"] == "expire-1"
    assert str(events[1]["request"]["id"]).startswith("req_")


def test_a_session_past_its_expires_at_expires_with_exactly_one_event(
    clocked: StripeEmulator, clock: Clock
) -> None:
    client = client_for(clocked)
    session_id = session_for(client)

    clock.now += 24 * 3600
    assert client.v1.checkout.sessions.retrieve(session_id).status == "expired"
    assert client.v1.checkout.sessions.retrieve(session_id).status == "expired"
    clocked.sessions()

    expired = [e for e in clocked.events() if e["type"] == "checkout.session.expired"]
    assert len(expired) == 1 and expired[0]["created"] == NOW + 24 * 3600


def test_stripe_expires_a_session_on_its_own_and_announces_it(clock: Clock, receiver: Receiver) -> None:
    emulator = StripeEmulator(clock, expiry_check_interval=0.05).start()
    try:
        client = client_for(emulator)
        endpoint(client, receiver.url, ("checkout.session.expired",))
        session_id = session_for(client)

        clock.now += 24 * 3600  # and nobody asks about the session
        deadline = time.monotonic() + 5
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        emulator.stop()

    assert [(e["type"], e["data"]["object"]["id"]) for e in receiver.events()] == [
        ("checkout.session.expired", session_id)
    ]


def test_an_expired_session_cannot_be_paid(clocked: StripeEmulator, clock: Clock) -> None:
    session_id = session_for(client_for(clocked))
    clock.now += 24 * 3600

    with pytest.raises(ValueError):
        clocked.complete(session_id)


# -- events --------------------------------------------------------------------------------


def test_events_are_shaped_as_stripe_shapes_them(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session_id = session_for(client)
    emulator.complete(session_id)
    [event_id] = [e["id"] for e in emulator.events()]

    event = client.v1.events.retrieve(event_id).to_dict()

    assert event_id.startswith("evt_")
    assert {
        k: event[k] for k in ("object", "type", "api_version", "livemode", "pending_webhooks", "request")
    } == {
        "object": "event",
        "type": "checkout.session.completed",
        "api_version": VERSION,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
    }
    assert "account" not in event  # a platform event
    assert event["data"]["object"]["id"] == session_id and event["data"]["object"]["status"] == "complete"
    assert isinstance(event["created"], int)


def test_events_list_newest_first_and_filter_by_type_types_and_created(
    clocked: StripeEmulator, clock: Clock
) -> None:
    client = client_for(clocked)
    first, second = session_for(client), session_for(client)
    clocked.complete(first, delayed=True)  # at NOW
    clock.now += 10
    clocked.settle(first, succeeded=True)  # at NOW + 10
    clock.now += 10
    clocked.expire(second)  # at NOW + 20

    def types(**filters: Any) -> list[str]:
        return [e.type for e in client.v1.events.list(params=params_of(**filters)).data]

    assert types() == [
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
    ]
    assert types(type="checkout.session.expired") == ["checkout.session.expired"]
    assert types(type="checkout.session.*") == types()
    assert types(types=["checkout.session.completed", "checkout.session.expired"]) == [
        "checkout.session.expired",
        "checkout.session.completed",
    ]
    assert types(created={"gt": NOW, "lte": NOW + 10}) == ["checkout.session.async_payment_succeeded"]
    assert types(created={"gte": NOW, "lt": NOW + 10}) == ["checkout.session.completed"]


def test_events_page_with_cursors(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    for _ in range(3):
        emulator.expire(session_for(client))
    newest, middle, oldest = [e["id"] for e in reversed(emulator.events())]

    first_page = client.v1.events.list(params={"limit": 2})
    after = client.v1.events.list(params={"limit": 2, "starting_after": middle})
    before = client.v1.events.list(params={"limit": 2, "ending_before": oldest})

    assert [e.id for e in first_page.data] == [newest, middle] and first_page.has_more
    assert [e.id for e in after.data] == [oldest] and not after.has_more
    assert [e.id for e in before.data] == [newest, middle] and not before.has_more


@pytest.mark.parametrize(
    ("filters", "param"),
    [
        ({"colour": "blue"}, "colour"),
        ({"type": "checkout.session.completed", "types": ["checkout.session.expired"]}, "types"),
        ({"created": {"after": 1}}, "created[after]"),
        ({"delivery_success": "maybe"}, "delivery_success"),
        ({"delivery_success": {"a": "b"}}, "delivery_success"),
        ({"type": {"a": "b"}}, "type"),
        ({"limit": 101}, "limit"),
        ({"starting_after": "evt_unknown"}, "starting_after"),
    ],
)
def test_events_list_rejects_what_stripe_rejects(
    client: stripe.StripeClient, filters: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.events.list(params=params_of(**filters))

    assert caught.value.http_status == 400 and caught.value.param == param


def test_events_belong_to_their_account(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    emulator.complete(session_for(client, account="acct_1Salon"), "acct_1Salon")

    on_connect = client.v1.events.list(options={"stripe_account": "acct_1Salon"}).data
    [event_id] = [e.id for e in on_connect]

    assert on_connect[0].account == "acct_1Salon"
    assert client.v1.events.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.events.retrieve(event_id)
    assert caught.value.http_status == 404
    assert [e["id"] for e in emulator.events("acct_1Salon")] == [event_id]


# -- webhook endpoints -----------------------------------------------------------------------


def test_webhook_endpoints_are_created_read_updated_and_deleted(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    created = endpoint(client, "https://hooks.example/stripe", ("checkout.session.completed",),
                       description="checkout", metadata={"team": "payments"})  # fmt: skip

    assert created.id.startswith("we_") and str(created.secret).startswith("whsec_")
    assert created.status == "enabled" and created.enabled_events == ["checkout.session.completed"]
    retrieved = client.v1.webhook_endpoints.retrieve(created.id).to_dict()
    assert "secret" not in retrieved  # shown only when created, as with Stripe
    updated = client.v1.webhook_endpoints.update(
        created.id, params={"disabled": True, "enabled_events": ["*"], "metadata": {"team": ""}}
    )
    assert (
        updated.status == "disabled"
        and updated.enabled_events == ["*"]
        and updated.to_dict()["metadata"] == {}
    )
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [created.id]
    assert emulator.webhook_endpoints()[0]["secret"] == created.secret
    deleted = client.v1.webhook_endpoints.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.retrieve(created.id)
    assert caught.value.http_status == 404


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"enabled_events": None}, "enabled_events"),
        ({"url": None}, "url"),
        ({"url": "not a url"}, "url"),
        ({"enabled_events": ["checkout.session.paid"]}, "enabled_events[0]"),
        ({"enabled_events": [{"a": "b"}]}, "enabled_events[0]"),
        ({"connect": "sometimes"}, "connect"),
        ({"api_version": "2024-06-20"}, "api_version"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_webhook_endpoint_parameters_are_checked(
    client: stripe.StripeClient, overrides: dict[str, Any], param: str
) -> None:
    values = {"url": "https://hooks.example/stripe", "enabled_events": ["*"], **overrides}

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create(
            params=params_of(**{k: v for k, v in values.items() if v is not None})
        )

    assert caught.value.param == param


def test_an_endpoint_belongs_to_the_account_that_made_it(client: stripe.StripeClient) -> None:
    made = endpoint(client, "https://hooks.example/salon", account="acct_1Salon")

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.webhook_endpoints.retrieve(made.id)
    assert client.v1.webhook_endpoints.list().data == []
    assert (
        client.v1.webhook_endpoints.retrieve(made.id, options={"stripe_account": "acct_1Salon"}).id == made.id
    )


# -- webhook delivery ------------------------------------------------------------------------


def test_deliveries_are_signed_so_stripe_python_verifies_them(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    secret = str(endpoint(client, receiver.url).secret)
    session_id = session_for(client, line_items=[
        {"quantity": 1, "price_data": {"currency": "sek", "unit_amount": 100, "product_data": {"name": "Färg"}}}
    ])  # fmt: skip

    emulator.complete(session_id)
    emulator.wait_for_deliveries()

    [(headers, body)] = receiver.received
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["User-Agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
    assert event.type == "checkout.session.completed"
    assert event.data.object["id"] == session_id


def test_a_tampered_payload_or_another_secret_does_not_verify(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    secret = str(endpoint(client, receiver.url).secret)
    emulator.complete(session_for(client))
    emulator.wait_for_deliveries()
    [(headers, body)] = receiver.received

    tampered = body.replace(b'"paid"', b'"unpaid"')

    assert tampered != body
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, headers["Stripe-Signature"], secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_another")


def test_a_failing_endpoint_is_retried_until_it_answers_2xx(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    made = endpoint(client, receiver.url)
    receiver.answers = [500, 503]

    emulator.complete(session_for(client))
    emulator.wait_for_deliveries()

    assert [(d["attempt"], d["status"]) for d in emulator.deliveries()] == [(1, 500), (2, 503), (3, 200)]
    assert {d["endpoint_id"] for d in emulator.deliveries()} == {made.id}
    assert len({e["id"] for e in receiver.events()}) == 1  # one event, sent three times
    assert client.v1.events.list(params={"delivery_success": False}).data == []


def test_an_endpoint_that_keeps_failing_leaves_the_event_undelivered(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    endpoint(client, receiver.url)
    endpoint(client, f"http://127.0.0.1:{closed_port()}/unreachable")
    receiver.answers = [500] * 10

    emulator.complete(session_for(client))
    emulator.wait_for_deliveries()

    statuses = sorted(d["status"] for d in emulator.deliveries())
    assert statuses == [0] * (1 + len(RETRY_DELAYS)) + [500] * (1 + len(RETRY_DELAYS))
    [undelivered] = client.v1.events.list(params={"delivery_success": False}).data
    assert undelivered.pending_webhooks == 2


def test_deliver_false_records_the_event_but_does_not_send_it(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    endpoint(client, receiver.url)
    session_id = session_for(client)

    emulator.complete(session_id, deliver=False)
    emulator.wait_for_deliveries()

    assert receiver.received == []
    [pending] = client.v1.events.list(params={"delivery_success": False}).data
    assert pending.type == "checkout.session.completed" and pending.pending_webhooks == 1
    emulator.deliver(pending.id)
    assert [e["id"] for e in receiver.events()] == [pending.id]
    assert client.v1.events.list(params={"delivery_success": False}).data == []
    assert [e.id for e in client.v1.events.list(params={"delivery_success": True}).data] == [pending.id]


def test_deliver_false_counts_as_undelivered_even_without_endpoints(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    emulator.complete(session_for(client), deliver=False)

    assert len(client.v1.events.list(params={"delivery_success": False}).data) == 1


def test_deliver_sends_a_duplicate_of_a_delivered_event(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    made = endpoint(client, receiver.url)
    emulator.complete(session_for(client))
    emulator.wait_for_deliveries()
    [event_id] = [e["id"] for e in emulator.events()]

    [again] = emulator.deliver(event_id, made.id)

    assert [e["id"] for e in receiver.events()] == [event_id, event_id]
    assert (again["attempt"], again["status"], again["manual"]) == (2, 200, True)


def test_paused_deliveries_can_be_sent_in_any_order_and_are_not_sent_twice(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    endpoint(client, receiver.url)
    session_id = session_for(client)
    emulator.pause_deliveries()
    try:
        emulator.complete(session_id, delayed=True)
        emulator.settle(session_id, succeeded=True)
        emulator.wait_for_deliveries()  # held deliveries do not count
        assert receiver.received == []
        completed, succeeded = [e["id"] for e in emulator.events()]

        emulator.deliver(succeeded)
        emulator.deliver(completed)
    finally:
        emulator.resume_deliveries()
    emulator.wait_for_deliveries()

    assert [e["id"] for e in receiver.events()] == [succeeded, completed]


def test_resumed_deliveries_go_out_oldest_first(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: Receiver
) -> None:
    endpoint(client, receiver.url)
    emulator.pause_deliveries()
    first, second = session_for(client), session_for(client)
    emulator.complete(first)
    emulator.complete(second)

    emulator.resume_deliveries()
    emulator.wait_for_deliveries()

    assert [e["data"]["object"]["id"] for e in receiver.events()] == [first, second]


def test_connect_events_reach_the_account_and_the_platforms_connect_endpoints(
    client: stripe.StripeClient, emulator: StripeEmulator, make_receiver: Callable[[], Receiver]
) -> None:
    platform, connect, salon, other_salon = (make_receiver() for _ in range(4))
    endpoint(client, platform.url)
    endpoint(client, connect.url, connect=True)
    endpoint(client, salon.url, account="acct_1Salon")
    endpoint(client, other_salon.url, account="acct_1Other")

    emulator.complete(session_for(client, account="acct_1Salon"), "acct_1Salon")
    emulator.complete(session_for(client))
    emulator.wait_for_deliveries()

    assert [e.get("account") for e in connect.events()] == ["acct_1Salon"]
    assert [e.get("account") for e in salon.events()] == ["acct_1Salon"]
    assert [e.get("account") for e in platform.events()] == [None]
    assert other_salon.received == []


def test_disabled_endpoints_and_unsubscribed_types_receive_nothing(
    client: stripe.StripeClient, emulator: StripeEmulator, make_receiver: Callable[[], Receiver]
) -> None:
    disabled, expiries = make_receiver(), make_receiver()
    client.v1.webhook_endpoints.update(endpoint(client, disabled.url).id, params={"disabled": True})
    endpoint(client, expiries.url, ("checkout.session.expired",))

    emulator.complete(session_for(client))
    emulator.expire(session_for(client))
    emulator.wait_for_deliveries()

    assert disabled.received == []
    assert [e["type"] for e in expiries.events()] == ["checkout.session.expired"]


# -- refunds ---------------------------------------------------------------------------------


def paid_intent(client: stripe.StripeClient, emulator: StripeEmulator, account: str | None = None) -> str:
    session_id = session_for(client, account)  # 1000 minor units
    return str(emulator.complete(session_id, account)["payment_intent"])


def test_a_payment_is_refunded_in_part_then_in_full(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    intent = paid_intent(client, emulator)

    part = client.v1.refunds.create(
        params={"payment_intent": intent, "amount": 400, "reason": "requested_by_customer"}
    )
    rest = client.v1.refunds.create(params={"payment_intent": intent, "metadata": {"booking": "b-1"}})

    assert part.id.startswith("re_") and part.object == "refund" and part.status == "succeeded"
    assert (part.amount, part.currency, part.payment_intent, part.reason) == (
        400,
        "sek",
        intent,
        "requested_by_customer",
    )
    assert rest.amount == 600 and rest.to_dict()["metadata"] == {"booking": "b-1"}
    assert client.v1.refunds.retrieve(part.id).amount == 400
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent}).data] == [
        rest.id,
        part.id,
    ]
    assert [r["id"] for r in emulator.refunds()] == [part.id, rest.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": intent})
    assert caught.value.code == "charge_already_refunded"
    refunded = [e["data"]["object"] for e in emulator.events() if e["type"] == "charge.refunded"]
    assert [(c["amount_refunded"], c["refunded"]) for c in refunded] == [(400, False), (1000, True)]


def test_a_refund_larger_than_what_remains_is_refused(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    intent = paid_intent(client, emulator)
    client.v1.refunds.create(params={"payment_intent": intent, "amount": 700})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": intent, "amount": 301})

    assert (caught.value.code, caught.value.param) == ("amount_too_large", "amount")
    assert sum(r["amount"] for r in emulator.refunds()) == 700


def test_refunds_are_idempotent(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    intent = paid_intent(client, emulator)

    first = client.v1.refunds.create(
        params={"payment_intent": intent, "amount": 100}, options={"idempotency_key": "r-1"}
    )
    again = client.v1.refunds.create(
        params={"payment_intent": intent, "amount": 100}, options={"idempotency_key": "r-1"}
    )

    assert again.id == first.id and len(emulator.refunds()) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(
            params={"payment_intent": intent, "amount": 200}, options={"idempotency_key": "r-1"}
        )


def test_only_a_paid_payment_intent_of_the_same_account_is_refunded(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    unpaid_session = session_for(client)
    unpaid = str(emulator.complete(unpaid_session, delayed=True)["payment_intent"])
    on_connect = paid_intent(client, emulator, "acct_1Salon")

    def refused(**values: Any) -> stripe.InvalidRequestError:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params=params_of(**values))
        assert caught.value.http_status == 400
        return caught.value

    assert "does not have a successful charge" in str(refused(payment_intent=unpaid).user_message)
    assert refused(payment_intent=on_connect).code == "resource_missing"
    assert refused(amount=100).code == "parameter_missing"
    assert refused(payment_intent={"id": unpaid}).param == "payment_intent"
    assert refused(payment_intent=on_connect, reason="changed_mind").param == "reason"
    assert client.v1.refunds.create(
        params={"payment_intent": on_connect}, options={"stripe_account": "acct_1Salon"}
    )


# -- the payer's pages -----------------------------------------------------------------------


def test_the_hosted_page_shows_line_items_total_and_the_controls_browser_tests_use(
    client: stripe.StripeClient,
) -> None:
    items = [*TWO_ITEMS, {"quantity": 1, "price_data": {
        "currency": "sek", "unit_amount": 100, "product_data": {"name": "<script>alert(1)</script>"}}}]  # fmt: skip
    session = client.v1.checkout.sessions.create(
        params=params(line_items=items, cancel_url="https://shop.example/cancel?a=1&b=2")
    )

    status, headers, page = fetch(str(session.url))

    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Haircut" in page and "900.00 SEK" in page and "450.00 SEK" in page and "1,051.00 SEK" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    for element in ("id=pay-card", "id=pay-delayed", "id=status>open<"):
        assert element in page
    assert 'id=cancel href="https://shop.example/cancel?a=1&amp;b=2"' in page
    assert "settle-succeeded" not in page


def test_no_cancel_link_without_a_cancel_url_and_zero_decimal_amounts(client: stripe.StripeClient) -> None:
    items = [
        {"quantity": 3, "price_data": {"currency": "jpy", "unit_amount": 1500, "product_data": {"name": "A"}}}
    ]
    session = client.v1.checkout.sessions.create(params=params(line_items=items))

    _, _, page = fetch(str(session.url))

    assert "id=cancel" not in page and "4,500 JPY" in page


def test_paying_on_the_hosted_page_returns_to_the_success_url_with_the_session_id(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = client.v1.checkout.sessions.create(
        params=params(success_url="https://shop.example/ok?session_id={CHECKOUT_SESSION_ID}")
    )

    status, headers, _ = fetch(str(session.url), {"action": "card", "email": "kim@example.com"})

    assert status == 303 and headers["Location"] == f"https://shop.example/ok?session_id={session.id}"
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert paid.payment_status == "paid" and paid.customer_details
    assert paid.customer_details.email == "kim@example.com"
    _, _, page = fetch(str(session.url))
    assert "id=status>complete<" in page and "pay-card" not in page
    assert fetch(str(session.url), {"action": "card"})[0] == 409


def test_a_bank_debit_on_the_page_offers_to_simulate_the_bank(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = client.v1.checkout.sessions.create(params=params())

    assert fetch(str(session.url), {"action": "delayed"})[0] == 303
    _, _, page = fetch(str(session.url))
    assert "id=settle-succeeded" in page and "id=settle-failed" in page and "pay-card" not in page
    status, headers, _ = fetch(str(session.url), {"action": "settle_succeeded"})

    assert status == 303 and headers["Location"] == f"/c/pay/{session.id}"
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    assert [e["type"] for e in emulator.events()][-1] == "checkout.session.async_payment_succeeded"


def embedded_session(client: stripe.StripeClient, **overrides: Any) -> Any:
    values = {
        "ui_mode": "embedded_page",
        "success_url": None,
        "return_url": "https://shop.example/r?s={CHECKOUT_SESSION_ID}",
    }
    return client.v1.checkout.sessions.create(params=params(**{**values, **overrides}))


def test_the_embedded_page_needs_the_sessions_client_secret(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = embedded_session(client, line_items=TWO_ITEMS)
    page_url = f"{emulator.url}/c/embedded/{session.id}?client_secret={urllib.parse.quote(str(session.client_secret))}"

    wrong = fetch(f"{emulator.url}/c/embedded/{session.id}?client_secret={session.id}_secret_wrong")
    status, headers, page = fetch(page_url)

    assert wrong[0] == 403
    assert status == 200 and "X-Frame-Options" not in headers
    assert "Haircut" in page and "id=pay-card" in page and "id=pay-delayed" in page and "target=_top" in page
    assert fetch(f"{emulator.url}/c/pay/{session.id}")[0] == 404  # embedded sessions have no hosted page


def test_paying_in_the_embedded_page_sends_the_top_window_to_the_return_url(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = embedded_session(client)
    page_url = f"{emulator.url}/c/embedded/{session.id}?client_secret={urllib.parse.quote(str(session.client_secret))}"

    status, headers, _ = fetch(page_url, {"action": "card"})

    assert status == 303 and headers["Location"] == f"https://shop.example/r?s={session.id}"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


def test_an_embedded_page_that_never_redirects_tells_its_parent(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = embedded_session(client, return_url=None, redirect_on_completion="never")
    page_url = f"{emulator.url}/c/embedded/{session.id}?client_secret={urllib.parse.quote(str(session.client_secret))}"

    status, _, page = fetch(page_url, {"action": "card"})

    assert status == 200 and "postMessage" in page and session.id in page


def test_the_stripe_js_stand_in_is_served_as_javascript(emulator: StripeEmulator) -> None:
    for path in ("/v3/", "/v3/stripe.js"):
        status, headers, script = fetch(f"{emulator.url}{path}")

        assert status == 200 and headers["Content-Type"].startswith("application/javascript")
        for name in ("window.Stripe", "initEmbeddedCheckout", "mount", "unmount", "destroy", "/c/embedded/"):
            assert name in script


# Just enough DOM for the stand-in: a container to mount into, window messaging.
_NODE_HARNESS = """
const listeners = [];
const container = {children: [], appendChild(child) { child.parentNode = this; this.children.push(child); },
  removeChild(child) { this.children = this.children.filter((c) => c !== child); }};
globalThis.window = globalThis;
window.addEventListener = (type, fn) => listeners.push(fn);
window.removeEventListener = (type, fn) => listeners.splice(listeners.indexOf(fn), 1);
globalThis.document = {
  currentScript: {src: process.argv[1] + "/v3/"},
  querySelector: (selector) => (selector === "#checkout" ? container : null),
  createElement: (tag) => ({tagName: tag, style: {}}),
};
require("vm").runInThisContext(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = {};
  try { Stripe("sk_test_secret"); } catch (error) { out.secretKeyRefused = error.name; }
  const stripe = Stripe("pk_test_123");
  const checkout = await stripe.initEmbeddedCheckout({fetchClientSecret: async () => process.argv[2]});
  checkout.mount("#checkout");
  out.src = container.children[0].src;
  out.second = await stripe.initEmbeddedCheckout({fetchClientSecret: async () => process.argv[2]})
    .then(() => "resolved", (error) => error.name);
  try { checkout.mount(document.createElement("div")); } catch (error) { out.mountedTwice = error.name; }
  checkout.unmount();
  out.afterUnmount = container.children.length;
  checkout.destroy();
  out.afterDestroy = await stripe.initEmbeddedCheckout({clientSecret: process.argv[2]}).then(() => "resolved");
  console.log(JSON.stringify(out));
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the Stripe.js stand-in")
def test_the_stripe_js_stand_in_mounts_the_embedded_page_in_an_iframe(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    session = embedded_session(client)
    _, _, script = fetch(f"{emulator.url}/v3/")

    ran = subprocess.run(
        ["node", "-e", _NODE_HARNESS, "--", emulator.url, str(session.client_secret)],
        input=script, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    out = json.loads(ran.stdout)

    assert out["src"] == (
        f"{emulator.url}/c/embedded/{session.id}?client_secret={urllib.parse.quote(str(session.client_secret))}"
    )
    assert out["secretKeyRefused"] == "IntegrationError"
    assert out["second"] == "IntegrationError"  # one Embedded Checkout at a time, as with Stripe.js
    assert out["mountedTwice"] == "IntegrationError"
    assert (out["afterUnmount"], out["afterDestroy"]) == (0, "resolved")
    status, _, page = fetch(out["src"])
    assert status == 200 and "id=pay-card" in page
