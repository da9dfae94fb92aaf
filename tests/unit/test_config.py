"""Configuration from the environment: documented defaults, clear errors."""

from __future__ import annotations

import pytest

from checkout.config import Config
from checkout.errors import ConfigurationError

VARIABLES = (
    "COMPANIES_TABLE_NAME", "SESSIONS_TABLE_NAME", "IDEMPOTENCY_TABLE_NAME", "STRIPE_SECRET_NAME_PREFIX",
    "STRIPE_API_BASE",
    "STRIPE_MAX_NETWORK_RETRIES", "STRIPE_TIMEOUT_SECONDS", "CHECKOUT_LEASE_SECONDS",
    "SETTINGS_CACHE_SECONDS", "SECRET_CACHE_SECONDS", "REFERENCE_SESSIONS_PER_MINUTE", "CORS_ALLOWED_ORIGINS",
    "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "EVENT_BUS_NAME", "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
    "RECONCILE_GRACE_MINUTES",
    "STAGE", "ALLOW_UNBOUND_API_KEYS",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    assert Config.from_env() == Config(
        companies_table="checkout-companies-dev",
        sessions_table="checkout-sessions-dev",
        idempotency_table="checkout-idempotency-dev",
        secret_name_prefix="checkout/dev/stripe/",
        stripe_api_base=None,
        stripe_max_network_retries=2,
        stripe_timeout_seconds=8.0,
        lease_seconds=6,
        settings_cache_seconds=60,
        secret_cache_seconds=300,
        reference_sessions_per_minute=10,
        cors_allowed_origins=(),
        service_name="stripe-checkout",
        metrics_namespace="BookingPayments",
        event_bus_name="stripe-checkout-events-dev",
        webhook_tolerance_seconds=300,
        reconcile_grace_minutes=5,
        stage="dev",
        allow_unbound_api_keys=False,
    )


@pytest.mark.parametrize("stage", ["dev", "staging", "prod"])
def test_the_stage_names_the_tables_and_the_secrets(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    monkeypatch.setenv("STAGE", stage)

    config = Config.from_env()

    assert config.stage == stage
    assert config.companies_table == f"checkout-companies-{stage}"
    assert config.sessions_table == f"checkout-sessions-{stage}"
    assert config.secret_name_prefix == f"checkout/{stage}/stripe/"


def test_requests_without_an_api_key_are_never_allowed_on_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_UNBOUND_API_KEYS", "true")
    assert Config.from_env().allow_unbound_api_keys is True

    monkeypatch.setenv("STAGE", "prod")
    with pytest.raises(ConfigurationError, match="ALLOW_UNBOUND_API_KEYS=true is refused on the prod stage"):
        Config.from_env()


def test_empty_values_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "")
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", " ")

    config = Config.from_env()

    assert config.stripe_api_base is None and config.stripe_max_network_retries == 2


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STRIPE_MAX_NETWORK_RETRIES", "two", "must be an integer"),
        ("STRIPE_TIMEOUT_SECONDS", "fast", "must be a number"),
        ("STRIPE_TIMEOUT_SECONDS", "0", "must be at least 0.1"),
        ("CHECKOUT_LEASE_SECONDS", "0", "must be at least 1"),
        ("SECRET_CACHE_SECONDS", "-5", "must be at least 0"),
        ("RECONCILE_GRACE_MINUTES", "-1", "must be at least 0"),
        ("STAGE", "production", "must be one of dev, staging, prod"),
        ("ALLOW_UNBOUND_API_KEYS", "maybe", "must be true or false"),
    ],
)
def test_malformed_values_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError, match=f"{name} {message}"):
        Config.from_env()
