"""Each company's Stripe secret key, from Secrets Manager, cached per warm container.

Keys are cached for `SECRET_CACHE_SECONDS`; after Stripe refuses a key the Stripe
gateway asks again with `refresh=True`, which is how a rotated key is picked up before
the cache would expire. Concurrent asks for one key share one fetch, so a cold request
can start the fetch early (`prefetch`) and wait for it only when Stripe is called.
Neither the key nor anything derived from it is ever logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from checkout.aws_clients import aws_failure
from checkout.errors import StripeCredentialsUnusable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_KEY_PREFIXES = ("sk_", "rk_")  # secret or restricted key; never a publishable pk_
# Answers that no retry will change: the key is missing or not ours to read.
_UNUSABLE = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "DecryptionFailure",
    "InvalidRequestException",
}


class SecretsManagerKeys:
    """Stripe secret keys by Secrets Manager secret name."""

    def __init__(
        self,
        client: SecretsManagerClient,
        cache_seconds: float,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._executor = executor
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, str]] = {}
        self._in_flight: dict[str, Future[str]] = {}

    def prefetch(self, secret_name: str) -> None:
        """Start fetching a key that is not cached, without waiting for it."""
        with self._lock:
            if self._fresh(secret_name) is None and secret_name not in self._in_flight:
                self._start(secret_name)

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        """The key stored under `secret_name`; cached unless `refresh`."""
        with self._lock:
            cached = None if refresh else self._fresh(secret_name)
            if cached is not None:
                return cached
            future = self._in_flight.get(secret_name)
            if future is None or refresh:
                future = self._start(secret_name)
        return future.result()

    def _fresh(self, secret_name: str) -> str | None:
        entry = self._cached.get(secret_name)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def _start(self, secret_name: str) -> Future[str]:
        future = self._executor.submit(self._fetch, secret_name)
        self._in_flight[secret_name] = future
        return future

    def _fetch(self, secret_name: str) -> str:
        try:
            try:
                value = self._client.get_secret_value(SecretId=secret_name).get("SecretString")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _UNUSABLE:
                    raise StripeCredentialsUnusable() from None
                raise aws_failure(exc, "Secrets Manager") from None
            except BotoCoreError as exc:
                raise aws_failure(exc, "Secrets Manager") from None
            if not isinstance(value, str) or not value.strip().startswith(_KEY_PREFIXES):
                raise StripeCredentialsUnusable()
            key = value.strip()
            with self._lock:
                if self._cache_seconds > 0:
                    self._cached[secret_name] = (self._clock() + self._cache_seconds, key)
            return key
        finally:
            with self._lock:
                self._in_flight.pop(secret_name, None)
