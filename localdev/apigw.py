"""API Gateway REST proxy events and Lambda contexts, as the deployed function receives them.

Used by the local API (one HTTP request in, one event to the real handler) and by the
tests, so both exercise the handler through exactly the shape API Gateway produces.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

STAGE = "local"


@dataclass
class LocalContext:
    """The attributes of a Lambda context that Powertools and the handler read."""

    function_name: str = "stripe-checkout-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-north-1:123456789012:function:stripe-checkout-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/stripe-checkout-local"
    log_stream_name: str = "local"
    timeout_ms: int = 60_000
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of the invocation's timeout."""
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))


def rest_event(
    method: str,
    path: str,
    body: str | bytes | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: str | Mapping[str, str] = "",
    source_ip: str = "127.0.0.1",
    resource: str | None = None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy integration event for one request.

    `api_key_id` is the id of the API key API Gateway accepted for the request; None
    for a request that did not come through a key-checking gateway (`sam local invoke`).
    """
    headers = dict(headers or {})
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query.items())
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    multi_headers = {name: [value] for name, value in headers.items()}
    encoded = False
    if isinstance(body, bytes):
        try:
            text: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
    else:
        text = body
    request_id = str(uuid.uuid4())
    identity = {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", headers.get("user-agent"))}
    if api_key_id is not None:
        identity["apiKeyId"] = api_key_id
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method.upper(),
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "accountId": "123456789012",
            "apiId": "local",
            "identity": identity,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def response_headers(response: Mapping[str, Any]) -> dict[str, str]:
    """The response's headers, single- and multi-valued, joined as HTTP would carry them."""
    headers: dict[str, str] = {k: str(v) for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(str(v) for v in values)
    return headers


def response_body(response: Mapping[str, Any]) -> bytes:
    """The response body as bytes, decoding base64 when the handler encoded it."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")
