"""The functions' AWS client: the JSON protocol over HTTPS, signed with Signature Version 4.

DynamoDB, Secrets Manager and EventBridge all speak AWS's JSON protocol: a POST to `/`
whose `X-Amz-Target` names the operation, a JSON body in, a JSON body out. This module
speaks it directly, because building botocore clients is the largest part of a cold
start: importing botocore's client machinery and building the first client (reading a
1.2 MB endpoint table, scanning every service's model directory, registering a few
hundred event handlers) costs about 175 ms before the first request, for three services
whose wire format fits on a page. Per call it also costs a fraction of botocore's CPU.

It behaves as botocore's low-level clients do where this service can tell the
difference, and `tests/contract/test_aws_clients.py` holds it to botocore's answers:

- the same methods (`client.update_item(TableName=..., ...)`), parameters and answers
  (plus `ResponseMetadata`), so the mypy_boto3 types describe it;
- the same exceptions: `ClientError` with botocore's `response` shape (the error's
  modelled fields such as `Item` and `CancellationReasons` at the top level), and
  botocore's connection and timeout errors;
- the same configuration: credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
  / `AWS_SESSION_TOKEN` (Lambda always sets them) and otherwise from botocore's own
  credential chain, imported only then (profiles, SSO, container and instance roles,
  refreshed as botocore refreshes them); the region from `AWS_DEFAULT_REGION` or
  `AWS_REGION`; endpoints from `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` unless
  `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`, `AWS_USE_FIPS_ENDPOINT`, `AWS_CA_BUNDLE`;
- botocore's standard retry mode: up to 4 attempts on throttling, transient errors,
  5xx answers and connection failures, truncated exponential backoff with jitter (a
  base of 1 s when throttled, 25-50 ms otherwise, `x-amz-retry-after` honoured), and a
  retry quota that stops retry storms when a service is down (500 units; a retry
  costs 14, 5 when throttled).

It does not model what this service does not use: binary (`B`) attributes arrive as
base64 text and timestamps as epoch seconds rather than `bytes` and `datetime`, no
parameter is validated before AWS sees it (AWS answers `ValidationException`), and
there are no paginators or waiters. Dual-stack endpoints are not built and
`HTTPS_PROXY` is not followed (a Lambda reaches AWS directly or through VPC
endpoints); set an endpoint URL where either is wanted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast
from urllib.parse import quote, urlsplit

import urllib3
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError


@dataclass(frozen=True)
class JsonService:
    """What tells one JSON-protocol service from another on the wire."""

    signing_name: str  # also the first label of its endpoint's host name
    service_id: str  # as botocore names it: `AWS_ENDPOINT_URL_<SERVICE_ID>`
    target_prefix: str
    json_version: str
    backoff_base_seconds: float = 0.05  # when not throttled; botocore's per-service scale

    @property
    def endpoint_variable(self) -> str:
        """The environment variable that sets this service's endpoint alone."""
        return "AWS_ENDPOINT_URL_" + self.service_id.upper().replace(" ", "_")


DYNAMODB = JsonService("dynamodb", "DynamoDB", "DynamoDB_20120810", "1.0", backoff_base_seconds=0.025)
SECRETS_MANAGER = JsonService("secretsmanager", "Secrets Manager", "secretsmanager", "1.1")
EVENTBRIDGE = JsonService("events", "EventBridge", "AWSEvents", "1.1")


@dataclass(frozen=True)
class ClientSettings:
    """Timeouts, attempts and pool size; short timeouts keep a stuck connection from
    eating the Lambda's time budget, and the pool is as large as the number of calls
    one request makes at once."""

    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 4  # in all: botocore's `retries={"max_attempts": 3}` means 3 retries
    max_pool_connections: int = 16
    max_backoff_seconds: float = 20.0


# botocore's standard retry mode, `botocore/retries/standard.py`.
THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
# Errors DynamoDB's model marks retryable, which botocore retries from the model.
_MODELLED_RETRYABLE = frozenset({"ReplicatedWriteConflictException"})
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_THROTTLING_STATUSES = frozenset({429})

# Headers SigV4 leaves unsigned, as botocore does: proxies may change them.
_UNSIGNED_HEADERS = frozenset({"user-agent", "expect", "x-amzn-trace-id", "authorization", "content-length"})
_USER_AGENT = "stripe-checkout-service aws-json-client"
_NOT_OPERATIONS = frozenset(
    {"exceptions", "meta", "close", "get_paginator", "can_paginate", "get_waiter", "generate_presigned_url"}
)


class Credentials(NamedTuple):
    """One set of AWS credentials, as signed with."""

    access_key: str
    secret_key: str
    token: str | None


def credential_source() -> Callable[[], Credentials]:
    """Where this process gets its credentials: the environment, as on Lambda, or
    botocore's credential chain, which refreshes temporary credentials itself."""
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        fixed = Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)
        return lambda: fixed
    import botocore.session  # only off Lambda: profiles, SSO, roles

    chain = botocore.session.get_session().get_credentials()
    if chain is None:
        raise NoCredentialsError

    def current() -> Credentials:
        frozen = chain.get_frozen_credentials()
        return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)

    return current


def region_name() -> str:
    """The region from the environment, or from the shared config file's profile."""
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        return region
    import botocore.session  # only off Lambda, which always sets the region

    configured = botocore.session.get_session().get_config_variable("region")
    if not configured:
        raise NoRegionError
    return str(configured)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def endpoint_url(service: JsonService, region: str) -> str:
    """The configured endpoint (moto, LocalStack, a VPC endpoint) or AWS's regional one."""
    if not _flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        configured = os.environ.get(service.endpoint_variable) or os.environ.get("AWS_ENDPOINT_URL")
        if configured:
            return configured.rstrip("/")
    host = service.signing_name + ("-fips" if _flag("AWS_USE_FIPS_ENDPOINT") else "")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{host}.{region}.{suffix}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _host(parts: Any) -> str:
    # The Host header as HTTP clients send it: IPv6 in brackets, the port only when it is
    # not the scheme's default.
    host = f"[{parts.hostname}]" if ":" in str(parts.hostname) else str(parts.hostname)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def sign(
    *,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> None:
    """Add SigV4's `X-Amz-Date`, `X-Amz-Security-Token` and `Authorization` to a POST's headers."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers["X-Amz-Date"] = stamp
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    parts = urlsplit(url)
    signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    signed = {name: value for name, value in signed.items() if name not in _UNSIGNED_HEADERS}
    signed["host"] = _host(parts)
    names = sorted(signed)
    canonical = "\n".join(
        [
            "POST",
            quote(parts.path or "/", safe="/~"),
            "",  # the JSON protocol sends no query string
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, digest])
    key = _hmac(("AWS4" + credentials.secret_key).encode("utf-8"), stamp[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )


def _json_default(value: Any) -> Any:
    # The two non-JSON types botocore's serializer takes for the JSON protocol.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot send a {type(value).__name__} to AWS")


class RetryQuota:
    """botocore's retry quota: retries spend from a shared budget that successes refill,
    so a service that keeps failing is not also flooded with retries."""

    CAPACITY = 500
    RETRY_COST = 14
    THROTTLING_RETRY_COST = 5
    NO_RETRY_INCREMENT = 1

    def __init__(self) -> None:
        self._available = self.CAPACITY
        self._lock = threading.Lock()

    def acquire(self, throttled: bool) -> int:
        """Spend on one retry; 0 (no retry) when the budget is spent."""
        cost = self.THROTTLING_RETRY_COST if throttled else self.RETRY_COST
        with self._lock:
            if cost > self._available:
                return 0
            self._available -= cost
            return cost

    def release(self, last_spent: int) -> None:
        """A success: give back what its last retry spent, or 1 when it needed none."""
        with self._lock:
            self._available = min(self.CAPACITY, self._available + (last_spent or self.NO_RETRY_INCREMENT))


class _Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class AwsJsonClient:
    """A low-level client of one JSON-protocol service, safe to share between threads."""

    def __init__(self, service: JsonService, settings: ClientSettings | None = None) -> None:
        self.service = service
        self.settings = settings or ClientSettings()
        self.region = region_name()
        self.endpoint_url = endpoint_url(service, self.region)
        # The JSON protocol's one path: `/` below the endpoint.
        self._url = self.endpoint_url if urlsplit(self.endpoint_url).path else self.endpoint_url + "/"
        self._credentials = credential_source()
        self._quota = RetryQuota()
        verify = os.environ.get("AWS_CA_BUNDLE")
        if verify is None:
            import certifi  # botocore's default bundle too; only for TLS

            verify = certifi.where()
        self._pool = urllib3.PoolManager(
            maxsize=self.settings.max_pool_connections,
            timeout=urllib3.Timeout(connect=self.settings.connect_timeout, read=self.settings.read_timeout),
            retries=False,
            ca_certs=verify,
        )
        self._content_type = f"application/x-amz-json-{service.json_version}"

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        # `update_item(**params)` is the operation UpdateItem, as on botocore's clients;
        # botocore's other client attributes do not exist here and must not become calls.
        if name.startswith("_") or not name.islower() or name in _NOT_OPERATIONS:
            raise AttributeError(name)
        operation = "".join(word.capitalize() for word in name.split("_"))
        return lambda **params: self.call(operation, params)

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One operation, retried as botocore's standard mode retries it."""
        body = json.dumps(params, separators=(",", ":"), default=_json_default).encode("utf-8")
        attempt, last_spent = 1, 0
        while True:
            failure: Exception
            code = status = retry_after = None
            try:
                answer = self._send(operation, body)
                if answer.status < 300:
                    parsed = self._parsed(answer, attempt)
                    self._quota.release(last_spent)
                    return parsed
            except (BotoConnectionError, HTTPClientError, ChecksumError) as exc:
                failure = exc  # no answer, or a damaged one: transient
            else:
                error = self._client_error(operation, answer, attempt)
                failure, code, status = error, error.response["Error"]["Code"], answer.status
                retry_after = answer.headers.get("x-amz-retry-after")
            throttled = code in THROTTLED_CODES or status in _THROTTLING_STATUSES
            retryable = (
                throttled
                or code in _TRANSIENT_CODES
                or code in _MODELLED_RETRYABLE
                or status in _TRANSIENT_STATUSES
                or not isinstance(failure, ClientError)
            )
            if not retryable or attempt >= self.settings.max_attempts:
                raise failure
            last_spent = self._quota.acquire(throttled)
            if not last_spent:
                raise failure
            time.sleep(self._delay(attempt, throttled, retry_after))
            attempt += 1

    def _delay(self, attempt: int, throttled: bool, retry_after: str | None) -> float:
        base = 1.0 if throttled else self.service.backoff_base_seconds
        delay = random.random() * min(base * 2.0 ** (attempt - 1), self.settings.max_backoff_seconds)  # noqa: S311 - jitter
        if retry_after is not None:
            try:
                asked = int(retry_after) / 1000
            except (ValueError, OverflowError):
                return delay
            if asked >= 0:
                delay = min(max(delay, asked), delay + 5)
        return delay

    def _send(self, operation: str, body: bytes) -> _Answer:
        headers = {
            "Content-Type": self._content_type,
            "X-Amz-Target": f"{self.service.target_prefix}.{operation}",
            "User-Agent": _USER_AGENT,
        }
        sign(
            url=self._url,
            headers=headers,
            body=body,
            credentials=self._credentials(),
            region=self.region,
            service=self.service.signing_name,
            now=datetime.now(UTC),
        )
        url = self._url
        try:
            response = self._pool.request("POST", url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.NewConnectionError as exc:  # before its base class, a timeout
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except urllib3.exceptions.SSLError as exc:
            raise SSLError(endpoint_url=url, error=exc) from exc
        except urllib3.exceptions.ProtocolError as exc:
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise HTTPClientError(error=exc) from exc
        return _Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.data)

    @staticmethod
    def _check_integrity(answer: _Answer) -> None:
        # DynamoDB checksums its answers; a body damaged on the way is retried, not parsed.
        expected = answer.headers.get("x-amz-crc32")
        if expected is not None and str(zlib.crc32(answer.body)) != expected.strip():
            raise ChecksumError(
                checksum_type="crc32",
                expected_checksum=expected,
                actual_checksum=str(zlib.crc32(answer.body)),
            )

    @staticmethod
    def _metadata(answer: _Answer, attempt: int) -> dict[str, Any]:
        request_id = answer.headers.get("x-amzn-requestid") or answer.headers.get("x-amz-request-id", "")
        return {
            "RequestId": request_id,
            "HTTPStatusCode": answer.status,
            "HTTPHeaders": dict(answer.headers),
            "RetryAttempts": attempt - 1,
        }

    def _parsed(self, answer: _Answer, attempt: int) -> dict[str, Any]:
        self._check_integrity(answer)
        try:
            parsed = json.loads(answer.body) if answer.body.strip() else {}
        except ValueError as exc:  # not JSON, not UTF-8: damaged on the way, as a bad checksum
            raise HTTPClientError(error=exc) from exc
        if not isinstance(parsed, dict):
            raise HTTPClientError(error=ValueError(f"a JSON {type(parsed).__name__} where an object belongs"))
        parsed["ResponseMetadata"] = self._metadata(answer, attempt)
        return parsed

    def _client_error(self, operation: str, answer: _Answer, attempt: int) -> ClientError:
        try:
            body = json.loads(answer.body) if answer.body.strip() else {}
        except ValueError:
            body = {}  # an HTML page from a proxy, a truncated answer
        if not isinstance(body, dict):
            body = {}
        # "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException" or
        # "ResourceNotFoundException:http://..."; without either, the status code.
        code = str(body.get("__type") or answer.headers.get("x-amzn-errortype") or answer.status)
        code = code.split(":", 1)[0].rsplit("#", 1)[-1]
        message = body.get("message", body.get("Message", ""))
        response: dict[str, Any] = {k: v for k, v in body.items() if k != "__type"}
        response["Error"] = {"Message": message, "Code": code}
        response["ResponseMetadata"] = self._metadata(answer, attempt)
        # botocore's stubs type the response as a partial TypedDict; this is its full shape.
        return ClientError(cast("Any", response), operation)
