"""Request decoding at the edge: API Gateway's event to text, and text to JSON values.

Every byte a caller sends passes through here once, before binding (`checkout.servicestack`)
looks at it, and what could not be carried safely further is refused now, with a 400
and before any state is touched. Found by attacking the service (docs/reliability.md):

- An event not shaped like API Gateway's REST proxy events (`event_problem`); it cannot
  come from API Gateway, so it gets a plain 400 without the resolver.
- Text that cannot be encoded as UTF-8: a lone UTF-16 surrogate (`"\\ud800"` in JSON)
  anywhere in the event or the body. Python holds such text happily, but DynamoDB,
  Stripe and the Lambda runtime cannot send it, so a request carrying it would fail
  half-way, after state was written.
- A body marked base64 that is not base64, or whose bytes are not UTF-8.
- Sizes that only an attacker sends: a body over `MAX_BODY_BYTES`, a query string or
  headers over `MAX_QUERY_CHARS` / `MAX_HEADER_CHARS` (API Gateway's own limits are
  about the same), JSON nested deeper than `MAX_DEPTH`, numbers longer than
  `MAX_NUMBER_CHARS` (Python refuses to convert integers of more than 4300 digits at
  all), and JSON's non-numbers NaN and Infinity.

The largest valid checkout (100 articles, two 2048-character URLs, a 200-character
reference, all escaped as `\\uXXXX`) is about 40 KiB of JSON, and it nests three deep.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from typing import Any

MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_CHARS = 8 * 1024
MAX_HEADER_CHARS = 16 * 1024
MAX_DEPTH = 16
MAX_NUMBER_CHARS = 32

SERIALIZATION_EXCEPTION = "SerializationException"
REQUEST_TOO_LARGE = "RequestTooLarge"


class InputRefused(Exception):
    """The request cannot be decoded safely (400); `error_code` says which way."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, keys included, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            for key, child in item.items():
                stack.append(key)
                stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unencodable(where: str) -> InputRefused:
    return InputRefused(
        SERIALIZATION_EXCEPTION,
        f"The {where} holds text that is not valid Unicode (a lone UTF-16 surrogate); send it as UTF-8.",
    )


def _is_str_map(value: Any, *, lists: bool) -> bool:
    if value is None:
        return True
    if not isinstance(value, Mapping):
        return False
    for key, item in value.items():
        if not isinstance(key, str):
            return False
        if lists:
            if not isinstance(item, list) or not all(isinstance(v, str) for v in item):
                return False
        elif not isinstance(item, str):
            return False
    return True


def _is_request_context(context: Any) -> bool:
    """The parts of `requestContext` the handlers read, as API Gateway always sends them."""
    if not isinstance(context, Mapping) or not isinstance(context.get("path"), str):
        return False
    identity = context.get("identity")
    return isinstance(identity, Mapping) and all(
        identity.get(name) is None or isinstance(identity.get(name), str) for name in ("apiKeyId", "sourceIp")
    )


def event_problem(event: Any) -> InputRefused | None:
    """Why an event cannot be served at all, or None when it is shaped as API Gateway's are."""
    if not isinstance(event, Mapping):
        return InputRefused(SERIALIZATION_EXCEPTION, "The event is not an API Gateway proxy event.")
    shaped = (
        isinstance(event.get("httpMethod"), str)
        and isinstance(event.get("path"), str)
        and _is_request_context(event.get("requestContext"))
        and (event.get("body") is None or isinstance(event.get("body"), str))
        and isinstance(event.get("isBase64Encoded", False), bool | None)
        and _is_str_map(event.get("headers"), lists=False)
        and _is_str_map(event.get("multiValueHeaders"), lists=True)
        and _is_str_map(event.get("queryStringParameters"), lists=False)
        and _is_str_map(event.get("multiValueQueryStringParameters"), lists=True)
        and _is_str_map(event.get("pathParameters"), lists=False)
    )
    if not shaped:
        return InputRefused(SERIALIZATION_EXCEPTION, "The event is not an API Gateway proxy event.")
    if not all(_encodable(text) for text in _strings(event)):
        return _unencodable("request")
    query = event.get("multiValueQueryStringParameters") or event.get("queryStringParameters") or {}
    if sum(len(k) + len(str(v)) for k, v in query.items()) > MAX_QUERY_CHARS:
        return InputRefused(
            REQUEST_TOO_LARGE, f"The query string is too long: at most {MAX_QUERY_CHARS} characters."
        )
    headers = event.get("multiValueHeaders") or event.get("headers") or {}
    if sum(len(k) + len(str(v)) for k, v in headers.items()) > MAX_HEADER_CHARS:
        return InputRefused(
            REQUEST_TOO_LARGE, f"The headers are too long: at most {MAX_HEADER_CHARS} characters."
        )
    return None


def body_text(body: str | None, is_base64_encoded: bool) -> str:
    """The request body as text: base64 decoded when API Gateway encoded it, UTF-8, bounded."""
    if not body:
        return ""
    if is_base64_encoded:
        if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4 + 4:
            raise _too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InputRefused(
                SERIALIZATION_EXCEPTION, "The body is marked as base64 but is not valid base64."
            ) from None
        if len(raw) > MAX_BODY_BYTES:
            raise _too_large()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputRefused(
                SERIALIZATION_EXCEPTION, f"The body is not valid UTF-8 (byte {exc.start})."
            ) from None
    if len(body) > MAX_BODY_BYTES or len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise _too_large()
    return body


def _too_large() -> InputRefused:
    return InputRefused(REQUEST_TOO_LARGE, f"The request body is too large: at most {MAX_BODY_BYTES} bytes.")


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise InputRefused(
            SERIALIZATION_EXCEPTION,
            f"A number in the JSON is too long: at most {MAX_NUMBER_CHARS} characters.",
        )
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _no_constant(name: str) -> Any:
    raise InputRefused(SERIALIZATION_EXCEPTION, f"{name} is not a JSON value.")


def _depth(text: str) -> int:
    """How deep the JSON text nests, strings skipped; linear, without parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str) -> Any:
    """JSON text as Python values, within the limits above; `json.JSONDecodeError` when it
    is not JSON at all, `InputRefused` when it is JSON this service will not read."""
    if _depth(text) > MAX_DEPTH:
        raise InputRefused(
            SERIALIZATION_EXCEPTION, f"The JSON is nested too deeply: at most {MAX_DEPTH} levels."
        )
    value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_no_constant)
    if not all(_encodable(s) for s in _strings(value)):
        raise _unencodable("JSON")
    return value
