"""Secrets Manager reads for the functions, cached per warm container.

Values are cached for a configured number of seconds; `refresh=True` reads again at
once (after Stripe refused a key, or a webhook signature matched none of the cached
signing secrets, either may have been rotated). Concurrent asks for one secret share
one read, so a cold request can start a read early (`prefetch`) and wait for it only
when it needs the value. Neither a value nor anything derived from it is ever logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from checkout.aws_clients import aws_failure
from checkout.errors import UpstreamFailure
from checkout.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Answers that no retry will change: the secret is missing (or scheduled for
# deletion), or it is there and this function's role or its KMS key refuses it.
_MISSING = {"ResourceNotFoundException", "InvalidRequestException"}
_FORBIDDEN = {"AccessDeniedException", "DecryptionFailure"}


class SecretUnavailable(Exception):
    """The secret does not exist, cannot be read by this function, or holds no text."""


class SecretForbidden(SecretUnavailable):
    """The secret may exist, but this function may not read it: a deployment fault (the
    role's policy, the KMS key's), not the caller's, which is logged as an error."""


class SecretCache:
    """Secret strings by name."""

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

    def prefetch(self, name: str) -> None:
        """Start reading a secret that is not cached, without waiting for it."""
        with self._lock:
            if self._fresh(name) is None and name not in self._in_flight:
                self._start(name)

    def get(self, name: str, *, refresh: bool = False) -> str:
        """The secret's text; `SecretUnavailable` or `UpstreamFailure` when it cannot be had."""
        with self._lock:
            cached = None if refresh else self._fresh(name)
            if cached is not None:
                return cached
            future = self._in_flight.get(name)
            joined = future is not None and not refresh
            if future is None or refresh:
                future = self._start(name)
        try:
            return future.result()
        except (SecretUnavailable, UpstreamFailure):
            if not joined:
                raise
            # The read joined (a prefetch) failed: read once more, as this call would have
            # had that read failed a moment earlier, so timing does not decide the answer.
            with self._lock:
                future = self._in_flight.get(name) or self._start(name)
            return future.result()

    def _fresh(self, name: str) -> str | None:
        entry = self._cached.get(name)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def _start(self, name: str) -> Future[str]:
        future = self._executor.submit(self._read, name)
        self._in_flight[name] = future
        return future

    def _read(self, name: str) -> str:
        try:
            try:
                value = self._client.get_secret_value(SecretId=name).get("SecretString")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in _MISSING:
                    raise SecretUnavailable(name) from None
                if code in _FORBIDDEN:
                    logger.error("The function may not read a secret", extra={"secret": name, "code": code})
                    raise SecretForbidden(name) from None
                raise aws_failure(exc, "Secrets Manager") from None
            except BotoCoreError as exc:
                raise aws_failure(exc, "Secrets Manager") from None
            if not isinstance(value, str):
                raise SecretUnavailable(name)
            with self._lock:
                if self._cache_seconds > 0:
                    self._cached[name] = (self._clock() + self._cache_seconds, value)
            return value
        finally:
            with self._lock:
                self._in_flight.pop(name, None)
