"""The AWS clients, with bounded retries and timeouts, and AWS failures as contract errors.

The functions call DynamoDB, Secrets Manager and EventBridge through
`checkout.aws_json_client`, which speaks their JSON protocol with botocore's
configuration, retries and exceptions but without building botocore clients, the
largest part of a cold start. The CLI's API Gateway calls (not a JSON-protocol service)
use a botocore client. Both pick up `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`,
which is how tests and the local API point them at moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from checkout.aws_json_client import (
    DYNAMODB,
    EVENTBRIDGE,
    SECRETS_MANAGER,
    THROTTLED_CODES,
    AwsJsonClient,
    ClientSettings,
)
from checkout.errors import UpstreamFailure

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Standard retry mode with 3 retries (4 attempts); short timeouts keep a stuck connection
# from eating the Lambda's time budget; the pool is as large as the calls one request
# makes at once.
SETTINGS = ClientSettings(connect_timeout=2, read_timeout=5, max_attempts=4, max_pool_connections=16)

# The function's role may not do this (a deployment fault): no retry will help.
_ACCESS_DENIED = {"AccessDeniedException", "UnrecognizedClientException"}


# The JSON client answers every operation with botocore's parameters, answers and
# exceptions (tests/contract/test_aws_clients.py), so the mypy_boto3 types describe it.
def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client for the function or the CLI."""
    return cast("DynamoDBClient", AwsJsonClient(DYNAMODB, SETTINGS))


def secretsmanager_client() -> SecretsManagerClient:
    """A Secrets Manager client for the function or the CLI."""
    return cast("SecretsManagerClient", AwsJsonClient(SECRETS_MANAGER, SETTINGS))


def events_client() -> EventBridgeClient:
    """An EventBridge client for publishing booking events."""
    return cast("EventBridgeClient", AwsJsonClient(EVENTBRIDGE, SETTINGS))


def apigateway_client() -> APIGatewayClient:
    """An API Gateway client for the CLI (API keys and usage plans)."""
    import botocore.session  # the CLI's only botocore client
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": SETTINGS.max_attempts},
        connect_timeout=SETTINGS.connect_timeout,
        read_timeout=SETTINGS.read_timeout,
    )
    return cast("APIGatewayClient", botocore.session.get_session().create_client("apigateway", config=config))


def aws_failure(exc: Exception, service: str) -> UpstreamFailure:
    """The contract's 503/504 for an AWS call that failed after its retries."""
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return UpstreamFailure("AwsTimeout", f"{service} did not answer in time; please retry.")
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    if code in THROTTLED_CODES:
        return UpstreamFailure("AwsThrottled", f"{service} is throttling requests; please retry.")
    if code in _ACCESS_DENIED:
        return access_denied(service)
    return UpstreamFailure("AwsUnavailable", f"{service} is unavailable; please retry.")


def access_denied(service: str) -> UpstreamFailure:
    """The contract's 502 for what the function's role (or a KMS key) does not allow it."""
    return UpstreamFailure(
        "AwsAccessDenied", f"The service may not use {service}; this needs a fix, please contact support."
    )


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
    """Turn AWS failures inside the block into `UpstreamFailure`.

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
