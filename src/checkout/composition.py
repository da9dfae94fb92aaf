"""Builds the use cases from configuration: the one place adapters are chosen.

Everything here is built once per container (at import, in Lambda's init phase): one
set of AWS clients, one thread pool, one Stripe HTTP client.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checkout.access import AccessPolicy
from checkout.aws_clients import dynamodb_client, events_client, secretsmanager_client
from checkout.booking_events import EventBridgePublisher, OutboxRelay
from checkout.checkout_status import CheckoutStatusService
from checkout.company_store import DynamoCompanyDirectory
from checkout.config import Config
from checkout.idempotency import IdempotencyKeys
from checkout.secrets_store import SecretCache
from checkout.service import CheckoutService
from checkout.session_registry import DynamoSessionRegistry
from checkout.stripe_gateway import StripeGateway
from checkout.stripe_keys import SecretsManagerKeys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from checkout.reconciler import Reconciler
    from checkout.stripe_webhooks import StripeWebhookService

# Calls one request makes at once: the create, the priors' expiries, the key fetch.
_WORKERS = 16


@dataclass(frozen=True)
class Services:
    """The use cases of the checkout API, sharing one set of adapters."""

    checkout: CheckoutService
    status: CheckoutStatusService
    idempotency: IdempotencyKeys


def _secrets(config: Config) -> SecretCache:
    # Secret reads get their own pool: a task on the main pool may wait for one.
    reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="secrets")
    return SecretCache(secretsmanager_client(), config.secret_cache_seconds, reads)


def _registry_and_relay(
    config: Config, dynamodb: DynamoDBClient
) -> tuple[DynamoSessionRegistry, OutboxRelay]:
    registry = DynamoSessionRegistry(dynamodb, config.sessions_table, config.lease_seconds)
    return registry, OutboxRelay(registry, EventBridgePublisher(events_client, config.event_bus_name))


def build_services(config: Config) -> Services:
    """The checkout and status use cases wired to DynamoDB, Secrets Manager, Stripe and
    EventBridge, and the `Idempotency-Key` records."""
    executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="checkout")
    dynamodb = dynamodb_client()
    registry, relay = _registry_and_relay(config, dynamodb)
    directory = DynamoCompanyDirectory(
        dynamodb, config.companies_table, config.settings_cache_seconds, refresher=executor
    )
    keys = SecretsManagerKeys(_secrets(config), stage=config.stage, name_prefix=config.secret_name_prefix)
    gateway = StripeGateway(config, keys)
    access = AccessPolicy(allow_unbound=config.allow_unbound_api_keys)
    checkout = CheckoutService(
        directory=directory,
        gateway=gateway,
        registry=registry,
        relay=relay,
        executor=executor,
        secret_name_prefix=config.secret_name_prefix,
        sessions_per_minute=config.reference_sessions_per_minute,
        access=access,
    )
    status = CheckoutStatusService(directory, gateway, registry, relay, access)
    return Services(checkout, status, IdempotencyKeys(config.idempotency_table))


def build_webhook_service(config: Config) -> StripeWebhookService:
    """The webhook receiver wired to DynamoDB, Secrets Manager and EventBridge."""
    # Imported here: the checkout function never receives webhooks and need not load it.
    from checkout.stripe_webhooks import StripeWebhookService

    registry, relay = _registry_and_relay(config, dynamodb_client())
    return StripeWebhookService(
        _secrets(config),
        config.secret_name_prefix,
        registry,
        relay,
        tolerance_seconds=config.webhook_tolerance_seconds,
    )


def build_reconciler(config: Config) -> Reconciler:
    """The reconciler wired to DynamoDB, Secrets Manager, Stripe and EventBridge.

    It uses the same adapters as the checkout function: the same leases (so
    `CHECKOUT_LEASE_SECONDS` must be the same), the same keys, the same gateway.
    """
    # Imported here: the API functions never reconcile and need not load it.
    from checkout.reconciler import Reconciler
    from checkout.stripe_webhooks import WebhookEndpoints

    dynamodb = dynamodb_client()
    registry, relay = _registry_and_relay(config, dynamodb)
    secrets = _secrets(config)
    directory = DynamoCompanyDirectory(dynamodb, config.companies_table, config.settings_cache_seconds)
    return Reconciler(
        directory,
        StripeGateway(
            config, SecretsManagerKeys(secrets, stage=config.stage, name_prefix=config.secret_name_prefix)
        ),
        registry,
        relay,
        WebhookEndpoints(secrets, config.secret_name_prefix),
        grace_minutes=config.reconcile_grace_minutes,
    )
