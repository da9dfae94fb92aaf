"""The optional `Idempotency-Key` request header, on Powertools Idempotency with DynamoDB.

A client that may send a request twice (a retry after a timeout, a double click) sends
the same key with it. Within `EXPIRES_AFTER_SECONDS` (24 h) the same key with the same
request answers the first 200 again, with no new side effect (no Stripe call, no
expiry); the same key with another request is `IdempotencyKeyReused` (422), and while the
first is still running a second one is `IdempotencyKeyInProgress` (409, Retry-After).
Failures are not kept: a request that failed may be sent again with its key.

Only requests that carry the header pay for the record (two more DynamoDB writes), and
the persistence layer, whose module imports boto3, is built on the first such request,
not at cold start. Table: `IDEMPOTENCY_TABLE_NAME` (key `id`, TTL attribute
`expiration`), in template.yaml.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from checkout.aws_clients import dynamodb_client
from checkout.errors import CheckoutError, UpstreamFailure

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

HEADER = "Idempotency-Key"
EXPIRES_AFTER_SECONDS = 24 * 60 * 60
MAX_KEY_LENGTH = 255
_KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits + string.punctuation)


class InvalidIdempotencyKey(CheckoutError):
    """The header is empty, too long, or holds characters other than printable ASCII."""

    error_code = "InvalidIdempotencyKey"

    def __init__(self) -> None:
        super().__init__(
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces."
        )


class IdempotencyKeyReused(CheckoutError):
    """The key was used in the last 24 hours with another request."""

    error_code = "IdempotencyKeyReused"

    def __init__(self) -> None:
        super().__init__(
            f"This {HEADER} was used with a different request in the last 24 hours; "
            "send a new key with a new request."
        )


class IdempotencyKeyInProgress(CheckoutError):
    """The first request with this key is still running."""

    error_code = "IdempotencyKeyInProgress"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__(f"A request with this {HEADER} is still being processed; retry shortly.")


def checked_key(value: str) -> str:
    """The header's value, if it is a usable key; `InvalidIdempotencyKey` otherwise."""
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not set(value) <= _KEY_CHARACTERS:
        raise InvalidIdempotencyKey()
    return value


class IdempotencyKeys:
    """Runs an operation at most once per key and request, and answers repeats from the record."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name
        self._run: Callable[..., dict[str, Any]] | None = None
        self._config: Any = None

    def _build(self) -> Callable[..., dict[str, Any]]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        self._config = IdempotencyConfig(
            event_key_jmespath="[operation, caller, key]",
            payload_validation_jmespath="request",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=EXPIRES_AFTER_SECONDS,
        )
        store = DynamoDBPersistenceLayer(table_name=self._table_name, boto3_client=dynamodb_client())

        def run(data: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            return work()

        # Powertools' decorator carries no types; the function keeps its signature.
        decorate = idempotent_function(
            data_keyword_argument="data", persistence_store=store, config=self._config
        )
        idempotent: Callable[..., dict[str, Any]] = decorate(run)
        return idempotent

    def answer(
        self,
        key: str,
        operation: str,
        caller: str | None,
        request: Mapping[str, Any],
        work: Callable[[], dict[str, Any]],
        context: LambdaContext | None,
    ) -> dict[str, Any]:
        """`work()`'s answer for the first request with `key`, the stored one for its repeats.

        Keys are the caller's own (`caller`: the API key id): another caller's request with
        the same key is a request of its own, checked and run as any other."""
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        if self._run is None:
            self._run = self._build()
        if context is not None:
            self._config.register_lambda_context(context)
        try:
            data = {"operation": operation, "caller": caller, "key": key, "request": dict(request)}
            return self._run(data=data, work=work)
        except IdempotencyValidationError:
            raise IdempotencyKeyReused() from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyKeyInProgress() from None
        except IdempotencyPersistenceLayerError:
            raise UpstreamFailure("AwsUnavailable", "DynamoDB is unavailable; please retry.") from None
