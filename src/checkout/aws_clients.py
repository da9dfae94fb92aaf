"""boto3 clients with bounded retries and timeouts, and AWS failures as contract errors.

boto3 picks up `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` by itself, which is how
tests and the local API point it at moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from checkout.errors import UpstreamFailure

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Standard mode retries throttling and transient errors with backoff; short timeouts
# keep a stuck connection from eating the Lambda's time budget.
BOTO_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

_THROTTLED = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}


def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client for the function or the CLI."""
    return boto3.client("dynamodb", config=BOTO_CONFIG)


def aws_failure(exc: Exception, service: str) -> UpstreamFailure:
    """The contract's 503/504 for an AWS call that failed after boto3's retries."""
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return UpstreamFailure(504, "AwsTimeout", f"{service} did not answer in time; please retry.")
    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _THROTTLED:
        return UpstreamFailure(503, "AwsThrottled", f"{service} is throttling requests; please retry.")
    return UpstreamFailure(503, "AwsUnavailable", f"{service} is unavailable; please retry.")


def _condition_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    reasons = exc.response.get("CancellationReasons", [])
    return code == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons
    )


@contextmanager
def aws_errors(service: str, on_condition_failed: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Turn boto3 failures inside the block into `UpstreamFailure`.

    A failed DynamoDB condition (alone or in a transaction) is not a failure of AWS but
    an answer; with `on_condition_failed` it raises what that factory returns instead.
    """
    try:
        yield
    except ClientError as exc:
        if on_condition_failed is not None and _condition_failed(exc):
            raise on_condition_failed() from None
        raise aws_failure(exc, service) from exc
    except BotoCoreError as exc:
        raise aws_failure(exc, service) from exc


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A plain dict as DynamoDB attribute values, leaving out None."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a plain dict (numbers become int)."""
    plain = {k: _deserializer.deserialize(v) for k, v in item.items()}
    return {k: int(v) if isinstance(v, Decimal) and v == int(v) else v for k, v in plain.items()}
