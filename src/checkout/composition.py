"""Builds the checkout service from configuration: the one place adapters are chosen."""

from __future__ import annotations

from checkout.access import AccessPolicy
from checkout.aws_clients import dynamodb_client
from checkout.company_store import DynamoCompanyDirectory
from checkout.config import Config
from checkout.service import CheckoutService
from checkout.session_registry import DynamoSessionRegistry
from checkout.stripe_gateway import StripeGateway, session_params
from checkout.stripe_keys import SecretsManagerKeys


def build_service(config: Config) -> CheckoutService:
    """The service wired to DynamoDB, Secrets Manager and Stripe as `config` says."""
    dynamodb = dynamodb_client()
    return CheckoutService(
        directory=DynamoCompanyDirectory(dynamodb, config.companies_table, config.settings_cache_seconds),
        keys=SecretsManagerKeys(config.secret_cache_seconds, config.stage, config.secret_name_prefix),
        gateway=StripeGateway(config),
        registry=DynamoSessionRegistry(dynamodb, config.sessions_table, config.lease_seconds),
        session_params=session_params,
        access=AccessPolicy(allow_unbound=config.allow_unbound_api_keys),
    )
