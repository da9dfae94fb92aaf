"""What a secret's unreadability means: missing (the caller's problem, or no endpoint)
or forbidden (the deployment's problem, which must not look like the caller's)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from checkout.errors import UpstreamFailure
from checkout.secrets_store import SecretCache, SecretForbidden, SecretUnavailable
from checkout.stripe_webhooks import WebhookEndpoints


class _Refusing:
    def __init__(self, code: str) -> None:
        self.code = code
        self.reads = 0

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        self.reads += 1
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "GetSecretValue")


def _cache(code: str) -> SecretCache:
    return SecretCache(_Refusing(code), 60, ThreadPoolExecutor(max_workers=1))  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["AccessDeniedException", "DecryptionFailure"])
def test_a_secret_the_role_may_not_read_is_forbidden(code: str) -> None:
    with pytest.raises(SecretForbidden):
        _cache(code).get("stripe-checkout/webhook/connect")
    # The reconciler must still look for the events Stripe could not deliver to it.
    assert WebhookEndpoints(_cache(code), "stripe-checkout/").registered("connect")


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "InvalidRequestException"])
def test_a_missing_secret_is_unavailable_not_forbidden(code: str) -> None:
    with pytest.raises(SecretUnavailable) as caught:
        _cache(code).get("stripe-checkout/webhook/connect")
    assert not isinstance(caught.value, SecretForbidden)
    assert not WebhookEndpoints(_cache(code), "stripe-checkout/").registered("connect")


def test_an_unavailable_secrets_manager_is_an_upstream_failure() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        _cache("InternalServiceError").get("stripe-checkout/acme")
    assert caught.value.error_code == "AwsUnavailable"


class _RefusingOnceSlowly:
    """Refuses the first read after a moment (a role still propagating), then answers."""

    def __init__(self) -> None:
        self.reads = 0

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        self.reads += 1
        if self.reads == 1:
            time.sleep(0.2)
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue")
        return {"SecretString": "sk_test_after"}


def test_a_get_that_joins_a_failed_prefetch_reads_once_more() -> None:
    client = _RefusingOnceSlowly()
    cache = SecretCache(client, 60, ThreadPoolExecutor(max_workers=2))  # type: ignore[arg-type]

    cache.prefetch("stripe-checkout/acme")  # still in flight when the value is asked for
    assert cache.get("stripe-checkout/acme") == "sk_test_after"
    assert client.reads == 2


def test_a_get_that_started_the_read_itself_does_not_read_again() -> None:
    client = _Refusing("ResourceNotFoundException")
    cache = SecretCache(client, 60, ThreadPoolExecutor(max_workers=1))  # type: ignore[arg-type]
    with pytest.raises(SecretUnavailable):
        cache.get("stripe-checkout/acme")
    assert client.reads == 1
