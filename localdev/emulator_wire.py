"""Stripe's wire conventions, as the emulator enforces them.

The pinned API version, nested form decoding, parameter schemas that turn unknown names
into 400s, the shape of error answers, the list conventions every Stripe list endpoint
shares (newest first, `limit`, `starting_after`/`ending_before` cursors, `created`
ranges, `expand`), and how the emulator keeps objects (private `_keys` never shown).
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"
MAX_LIST_LIMIT = 100


@dataclass
class ApiCall:
    """One API request as a route handler sees it."""

    params: dict[str, Any]
    account: str  # "" for the platform, else the Stripe-Account
    object_id: str  # the id in the path, if the route has one
    request: dict[str, str | None]  # an Event's `request`: this request's id and idempotency key


def new_id(prefix: str) -> str:
    """A fresh Stripe-looking id: `pi_...`, `evt_...`."""
    return f"{prefix}_{secrets.token_hex(12)}"


def public(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored object as Stripe shows it: a copy without the emulator's private `_keys`."""
    return copy.deepcopy({k: v for k, v in stored.items() if not k.startswith("_")})


class StripeApiError(Exception):
    """An error answer, shaped as Stripe shapes it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": error_type, "message": message}
        if param is not None:
            self.body["param"] = param
        if code is not None:
            self.body["code"] = code


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeApiError:
    """A 400 `invalid_request_error`."""
    return StripeApiError(400, message, param=param, code=code)


def unknown_parameter(name: str) -> StripeApiError:
    """The 400 Stripe answers for a parameter it does not know."""
    return invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")


def missing(kind: str, object_id: str, param: str | None = None) -> StripeApiError:
    """'No such ...': a 404 for the object in the path, a 400 for one named in a parameter."""
    status = 404 if param is None else 400
    return StripeApiError(
        status, f"No such {kind}: '{object_id}'", param=param or "id", code="resource_missing"
    )


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's nested form encoding (`a[b][0][c]=v`, `types[]=x`) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True, strict_parsing=False):
        head = raw_key.split("[", 1)[0]
        path: list[str] = [head, *re.findall(r"\[([^\]]*)\]", raw_key[len(head) :])]
        node: dict[str, Any] = root
        for position, part in enumerate(path):
            # `types[]=a&types[]=b`: an empty index appends, as curl users write arrays.
            key = str(len(node)) if part == "" else part
            if position == len(path) - 1:
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise invalid(f"Invalid parameter: {raw_key}", raw_key)
                node = child
    decoded: dict[str, Any] = _lists(root)
    return decoded


def _lists(node: Any) -> Any:
    # `line_items[0]`, `line_items[1]` arrive as a dict with digit keys.
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _param(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


# Parameters (by their last name) whose value is an array of strings, not a scalar.
STRING_ARRAYS = {
    "expand",
    "allowed_payment_method_types",
    "excluded_payment_method_types",
    "images",
    "enabled_events",
    "types",
}


def check_schema(value: Any, schema: Any, prefix: str = "") -> None:
    """400 for any parameter the emulator (and so our use of Stripe) does not know.

    A schema is None (a scalar, or an array of strings for the names in STRING_ARRAYS),
    a dict (a nested object with these keys), "metadata" (free keys within Stripe's
    limits) or a list of one schema (an array of objects).
    """
    if schema is None:
        names = re.findall(r"[^\[\]]+", prefix)
        if isinstance(value, list) and names and names[-1] in STRING_ARRAYS:
            if not all(isinstance(item, str) for item in value):
                raise invalid(f"Invalid array: {prefix}", prefix)
        elif isinstance(value, dict | list):
            raise invalid(f"Invalid {prefix}: must be a string", prefix)
        return
    if schema == "metadata":
        check_metadata(value, prefix)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise invalid(f"Invalid array: {prefix}", prefix)
        for index, item in enumerate(value):
            check_schema(item, schema[0], _param(prefix, index))
        return
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {prefix}", prefix)
    for key, item in value.items():
        name = _param(prefix, key)
        if key not in schema:
            raise unknown_parameter(name)
        check_schema(item, schema[key], name)


def check_metadata(value: Any, param: str = "metadata") -> None:
    """Stripe's metadata limits: 50 keys, keys up to 40 characters without brackets, values up to 500."""
    if not isinstance(value, dict):
        raise invalid(f"Invalid {param}: must be a hash", param)
    if len(value) > 50:
        raise invalid("Metadata can have up to 50 keys.", param)
    for key, item in value.items():
        if len(key) > 40 or "[" in key or "]" in key:
            raise invalid(f"Metadata keys can have up to 40 characters and no square brackets: {key}", param)
        if not isinstance(item, str) or len(item) > 500:
            raise invalid(f"Metadata values can have up to 500 characters: {key}", _param(param, key))


def only(params: Mapping[str, Any], allowed: set[str]) -> None:
    """400 for the first parameter outside `allowed`."""
    for key in params:
        if key not in allowed:
            raise unknown_parameter(key)


def integer(value: Any, param: str, minimum: int | None = None) -> int:
    """An integer parameter, at least `minimum`."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param) from None
    if minimum is not None and number < minimum:
        raise invalid(f"Invalid {param}: must be greater than or equal to {minimum}", param)
    return number


def boolean(value: Any, param: str) -> bool:
    """A boolean parameter, as stripe-python sends one ("true"/"false")."""
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise invalid(f"Invalid boolean: {value}", param)


def text(value: Any, param: str) -> str:
    """A string parameter: not a hash, not an array."""
    if not isinstance(value, str):
        raise invalid(f"Invalid {param}: must be a string", param)
    return value


def url(value: Any, param: str) -> str:
    """An http(s) URL parameter."""
    parts = urlsplit(str(value))
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise invalid("Not a valid URL", param, "url_invalid")
    return str(value)


def created_filter(value: Any, param: str = "created") -> Callable[[int], bool]:
    """`created=T` or `created[gt|gte|lt|lte]=T` as a predicate on a timestamp."""
    if not isinstance(value, dict):
        exact = integer(value, param)
        return lambda created: created == exact
    bounds: dict[str, int] = {}
    for key, item in value.items():
        if key not in {"gt", "gte", "lt", "lte"}:
            raise unknown_parameter(f"{param}[{key}]")
        bounds[key] = integer(item, f"{param}[{key}]")

    def within(created: int) -> bool:
        return (
            ("gt" not in bounds or created > bounds["gt"])
            and ("gte" not in bounds or created >= bounds["gte"])
            and ("lt" not in bounds or created < bounds["lt"])
            and ("lte" not in bounds or created <= bounds["lte"])
        )

    return within


def expand_paths(params: Mapping[str, Any], allowed: set[str]) -> list[str]:
    """The `expand[]` paths of a request; 400 for one this object cannot expand."""
    paths = params.get("expand", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise invalid("Invalid array", "expand")
    for path in paths:
        if path not in allowed:
            raise invalid(f"This property cannot be expanded ({path}).", "expand")
    return paths


def list_page(
    objects: list[dict[str, Any]],
    params: Mapping[str, Any],
    url_path: str,
    kind: str,
    keep: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> dict[str, Any]:
    """One page of a Stripe list: `objects` newest first, cursors by id, then `keep` as filter.

    A cursor is a position among all of the account's objects, so it may name an object
    the filter leaves out, as with Stripe; an id that does not exist at all is a 400.
    """
    limit = integer(params.get("limit", 10), "limit", 1)
    if limit > MAX_LIST_LIMIT:
        raise invalid(f"Invalid limit: must be between 1 and {MAX_LIST_LIMIT}", "limit")
    ids = [o["id"] for o in objects]
    for cursor in ("starting_after", "ending_before"):
        if cursor in params and params[cursor] not in ids:
            raise missing(kind, str(params[cursor]), cursor)
    if "starting_after" in params:
        after = [o for o in objects[ids.index(params["starting_after"]) + 1 :] if keep(o)]
        page, has_more = after[:limit], len(after) > limit
    elif "ending_before" in params:
        before = [o for o in objects[: ids.index(params["ending_before"])] if keep(o)]
        page, has_more = before[-limit:], len(before) > limit
    else:
        kept = [o for o in objects if keep(o)]
        page, has_more = kept[:limit], len(kept) > limit
    return {"object": "list", "url": url_path, "has_more": has_more, "data": page}
