"""Which confirmation and cancel URLs a company may send payers to.

ConfirmationUrl and CancelUrl come from the browser, so without a check they would turn
the company's Stripe Checkout into an open redirect. A URL must be absolute `https`
(plain `http` only for localhost), carry no credentials, and fall under one of the
company's allowed prefixes, compared by parts (scheme, host, port, path segments) and
never as raw strings, so `https://shop.example` does not admit
`https://shop.example.evil.test`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

_LOCALHOSTS = {"localhost", "127.0.0.1", "::1"}
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Browsers treat a backslash as a slash and drop control characters; a URL that
# depends on either is read differently by us and by the browser.
_UNSAFE = re.compile(r"[\\\x00-\x20\x7f]")


def _parse(url: str) -> SplitResult | None:
    if _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or _DEFAULT_PORTS[parts.scheme]


def url_problem(url: str) -> str | None:
    """Why `url` may never be used as a redirect target, or None when its form is fine."""
    parts = _parse(url)
    if parts is None:
        return "must be an absolute https URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain user credentials"
    if parts.scheme == "http" and parts.hostname not in _LOCALHOSTS:
        return "must use https"
    return None


def _under(parts: SplitResult, prefix: SplitResult) -> bool:
    if (parts.scheme, parts.hostname, _port(parts)) != (prefix.scheme, prefix.hostname, _port(prefix)):
        return False
    base = prefix.path.rstrip("/")
    return not base or parts.path == base or parts.path.startswith(base + "/")


def is_allowed(url: str, allowed_prefixes: Iterable[str]) -> bool:
    """True when `url` is well formed and falls under one of the prefixes."""
    parts = _parse(url)
    if parts is None or url_problem(url) is not None:
        return False
    for prefix in allowed_prefixes:
        prefix_parts = _parse(prefix)
        if prefix_parts is not None and _under(parts, prefix_parts):
            return True
    return False
