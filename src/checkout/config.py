"""Every setting of the functions and of `checkout-admin`, read from environment variables.

This is the one configuration model: each field names its variable and default here,
and the README's configuration table lists them all (a test keeps the two in step). The
function starts with no configuration at all against real AWS and real Stripe; a local
run only points the endpoints elsewhere. AWS endpoints and credentials are not
configured here: the AWS clients read botocore's variables (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_REGION`, ...) themselves, see `aws_json_client`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from checkout.errors import ConfigurationError

# Deployment stages. Each has its own tables, secrets and API keys (the names carry the
# stage), and only prod may hold live Stripe keys.
STAGES = ("dev", "staging", "prod")
PRODUCTION = "prod"


def _number[N: (int, float)](name: str, default: N, minimum: N, kind: type[N]) -> N:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"true", "1", "yes"}:
        return True
    if raw in {"false", "0", "no"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _stage() -> str:
    stage = os.environ.get("STAGE", "").strip() or "dev"
    if stage not in STAGES:
        raise ConfigurationError(f"STAGE must be one of {', '.join(STAGES)}, got {stage!r}")
    return stage


@dataclass(frozen=True)
class Config:
    """Settings shared by the Lambda function and the operator CLI."""

    companies_table: str
    sessions_table: str
    idempotency_table: str
    secret_name_prefix: str
    stripe_api_base: str | None
    stripe_max_network_retries: int
    stripe_timeout_seconds: float
    lease_seconds: int
    settings_cache_seconds: int
    secret_cache_seconds: int
    reference_sessions_per_minute: int
    cors_allowed_origins: tuple[str, ...]
    service_name: str
    metrics_namespace: str
    event_bus_name: str
    webhook_tolerance_seconds: int
    reconcile_grace_minutes: int
    stage: str = "dev"
    allow_unbound_api_keys: bool = False

    @classmethod
    def from_env(cls) -> Config:
        """Read the configuration; raise `ConfigurationError` on a malformed value."""
        stage = _stage()
        # Requests that carry no API key id (`sam local invoke`) may act for any company;
        # on prod every request must come through API Gateway with a bound key.
        allow_unbound = _flag("ALLOW_UNBOUND_API_KEYS", False)
        if allow_unbound and stage == PRODUCTION:
            raise ConfigurationError("ALLOW_UNBOUND_API_KEYS=true is refused on the prod stage")
        return cls(
            stage=stage,
            allow_unbound_api_keys=allow_unbound,
            companies_table=os.environ.get("COMPANIES_TABLE_NAME", "") or f"checkout-companies-{stage}",
            sessions_table=os.environ.get("SESSIONS_TABLE_NAME", "") or f"checkout-sessions-{stage}",
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE_NAME", "") or f"checkout-idempotency-{stage}",
            secret_name_prefix=os.environ.get("STRIPE_SECRET_NAME_PREFIX", "") or f"checkout/{stage}/stripe/",
            stripe_api_base=os.environ.get("STRIPE_API_BASE", "").strip() or None,
            # Two retries with Stripe's backoff (0.5 s, 1 s) ride out a blip; more would
            # push a request past API Gateway's 29 s integration timeout.
            stripe_max_network_retries=_number("STRIPE_MAX_NETWORK_RETRIES", 2, 0, int),
            # stripe-python's default is 80 s, longer than the whole Lambda may run.
            stripe_timeout_seconds=_number("STRIPE_TIMEOUT_SECONDS", 8.0, 0.1, float),
            # How long a reference stays held by a request that stopped renewing it (it
            # died, froze, or lost DynamoDB): the working request renews it every third
            # of this (see session_registry), so it may be far shorter than the Lambda
            # timeout. 6 s lets the next request in within 10 s of any failure.
            lease_seconds=_number("CHECKOUT_LEASE_SECONDS", 6, 1, int),
            settings_cache_seconds=_number("SETTINGS_CACHE_SECONDS", 60, 0, int),
            secret_cache_seconds=_number("SECRET_CACHE_SECONDS", 300, 0, int),
            # New sessions one reference may ask for per minute, so one reference cannot
            # spend its company's Stripe rate limit.
            reference_sessions_per_minute=_number("REFERENCE_SESSIONS_PER_MINUTE", 10, 1, int),
            cors_allowed_origins=tuple(
                o.strip() for o in os.environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
            # Powertools reads these itself too (and POWERTOOLS_LOG_LEVEL); named here so the
            # logger, the metrics and the alarms agree on one default.
            service_name=os.environ.get("POWERTOOLS_SERVICE_NAME", "") or "stripe-checkout",
            metrics_namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "") or "BookingPayments",
            # The EventBridge bus booking events go to (the template creates it).
            event_bus_name=os.environ.get("EVENT_BUS_NAME", "") or f"stripe-checkout-events-{stage}",
            # How old a webhook's signature timestamp may be; Stripe's libraries default to 300.
            webhook_tolerance_seconds=_number("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300, 1, int),
            # How old a record must be before the reconciler looks at it: time for the
            # webhook (and the request that wrote it) to do their part first.
            reconcile_grace_minutes=_number("RECONCILE_GRACE_MINUTES", 5, 0, int),
        )
