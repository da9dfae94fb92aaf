"""The emulator is as strict as Stripe where the service depends on it.

Driven by the real stripe-python client over HTTP, so what is checked here is also how
stripe-python encodes our parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from localdev.stripe_emulator import StripeEmulator
from tests.conftest import STRIPE_KEY

VERSION = "2026-10-28.endive"


@pytest.fixture(scope="module")
def emulator() -> Iterator[StripeEmulator]:
    emulator = StripeEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, stripe_version=VERSION, base_addresses={"api": emulator.url})


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
