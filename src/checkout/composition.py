"""Builds the services from configuration: the one place adapters are chosen.

Everything here is built once per container (at import, in Lambda's init phase): one
botocore session and its clients, one thread pool, one Stripe HTTP client.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from checkout.aws_clients import dynamodb_client, secretsmanager_client
from checkout.checkout_status import CheckoutStatusService
from checkout.company_store import DynamoCompanyDirectory
from checkout.config import Config
from checkout.service import CheckoutService
from checkout.session_registry import DynamoSessionRegistry
from checkout.stripe_gateway import StripeGateway
from checkout.stripe_keys import SecretsManagerKeys

# Calls one request makes at once: the create, the priors' expiries, the key fetch.
_WORKERS = 16


@dataclass(frozen=True)
class Services:
    """The use cases of the checkout API, sharing one set of adapters."""

    checkout: CheckoutService
    status: CheckoutStatusService


def build_services(config: Config) -> Services:
    """Both use cases, wired to the same adapters."""
    checkout = build_service(config)
    status = CheckoutStatusService(checkout.directory, checkout.gateway, checkout.registry)
    return Services(checkout, status)


def build_service(config: Config) -> CheckoutService:
    """The checkout service wired to DynamoDB, Secrets Manager and Stripe as `config` says."""
    executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="checkout")
    dynamodb = dynamodb_client()
    # Key fetches get their own pool: a task on the main pool may wait for one.
    key_fetches = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stripe-key")
    keys = SecretsManagerKeys(secretsmanager_client(), config.secret_cache_seconds, key_fetches)
    return CheckoutService(
        directory=DynamoCompanyDirectory(dynamodb, config.companies_table, config.settings_cache_seconds),
        gateway=StripeGateway(config, keys),
        registry=DynamoSessionRegistry(dynamodb, config.sessions_table, config.lease_seconds),
        executor=executor,
        secret_name_prefix=config.secret_name_prefix,
        sessions_per_minute=config.reference_sessions_per_minute,
    )
