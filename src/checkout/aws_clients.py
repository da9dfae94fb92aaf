"""botocore clients with bounded retries and timeouts, and AWS failures as contract errors.

The function needs only low-level clients, so it builds them from one botocore session
per container and never imports boto3 (whose import, mostly s3transfer, costs a cold
start about 90 ms for nothing). botocore picks up `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_<SERVICE>` by itself, which is how tests and the local API point it
at moto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from checkout.errors import UpstreamFailure

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Standard mode retries throttling and transient errors with backoff; short timeouts
# keep a stuck connection from eating the Lambda's time budget. The pool is as large
# as the number of calls one request makes at once.
BOTO_CONFIG = BotoConfig(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=16,
)

_THROTTLED = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}

_session: botocore.session.Session | None = None
_session_lock = threading.Lock()


def _client(service: str) -> Any:
    # A botocore session is not safe to share between threads while it builds clients
    # (the clients themselves are), and a client may be built late, on first use.
    global _session  # noqa: PLW0603 - one session per container, made on first use
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(service, config=BOTO_CONFIG)


def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client for the function or the CLI."""
    return cast("DynamoDBClient", _client("dynamodb"))


def secretsmanager_client() -> SecretsManagerClient:
    """A Secrets Manager client for the function or the CLI."""
    return cast("SecretsManagerClient", _client("secretsmanager"))


def events_client() -> EventBridgeClient:
    """An EventBridge client for publishing booking events."""
    return cast("EventBridgeClient", _client("events"))


def apigateway_client() -> APIGatewayClient:
    """An API Gateway client for the CLI (API keys and usage plans)."""
    return cast("APIGatewayClient", _client("apigateway"))


def aws_failure(exc: Exception, service: str) -> UpstreamFailure:
    """The contract's 503/504 for an AWS call that failed after botocore's retries."""
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return UpstreamFailure("AwsTimeout", f"{service} did not answer in time; please retry.")
    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _THROTTLED:
        return UpstreamFailure("AwsThrottled", f"{service} is throttling requests; please retry.")
    return UpstreamFailure("AwsUnavailable", f"{service} is unavailable; please retry.")


def condition_failed(exc: ClientError) -> bool:
    """True when a DynamoDB condition (alone or in a transaction) did not hold."""
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    reasons = exc.response.get("CancellationReasons", [])
    return code == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons
    )


@contextmanager
def aws_errors(
    service: str, on_condition_failed: Callable[[ClientError], Exception] | None = None
) -> Iterator[None]:
    """Turn botocore failures inside the block into `UpstreamFailure`.

    A failed DynamoDB condition is not a failure of AWS but an answer; with
    `on_condition_failed` it raises what that factory makes of the error instead.
    """
    try:
        yield
    except ClientError as exc:
        if on_condition_failed is not None and condition_failed(exc):
            raise on_condition_failed(exc) from None
        raise aws_failure(exc, service) from exc
    except BotoCoreError as exc:
        raise aws_failure(exc, service) from exc


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, Mapping):
        return {"M": to_item(value)}
    if isinstance(value, list | tuple):
        return {"L": [_attribute(v) for v in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """A plain mapping as DynamoDB attribute values, leaving out None."""
    return {k: _attribute(v) for k, v in values.items() if v is not None}


def _plain(attribute: Mapping[str, Any]) -> Any:
    kind, value = next(iter(attribute.items()))
    if kind in {"S", "BOOL"}:
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else number
    if kind == "M":
        return from_item(value)
    if kind == "L":
        return [_plain(v) for v in value]
    if kind == "NULL":
        return None
    if kind == "SS":
        return set(value)
    raise TypeError(f"unexpected DynamoDB type {kind}")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a plain dict (whole numbers become int)."""
    return {k: _plain(v) for k, v in item.items()}
