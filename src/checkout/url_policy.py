"""Which confirmation and cancel URLs a company may send payers to.

ConfirmationUrl and CancelUrl come from the browser, so without a check they would turn
the company's Stripe Checkout into an open redirect. A URL must be absolute `https`
(plain `http` only for localhost), carry no credentials, and fall under one of the
company's allowed prefixes, compared by parts (scheme, host, port, path segments) and
never as raw strings, so `https://shop.example` does not admit
`https://shop.example.evil.test`.

Paths are compared after normalisation (percent-escapes of unreserved characters
decoded), and a URL the browser would read differently from us is refused outright:
dot segments (`..`, `%2e%2e`), which the browser resolves and so climbs out of the
prefix; encoded slashes and backslashes, which some servers decode into separators;
backslashes, control characters and whitespace or invisible characters of any script,
which browsers drop or treat as a slash.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

_LOCALHOSTS = {"localhost", "127.0.0.1", "::1"}
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Control, format (zero-width, bidi), space, line and paragraph separators.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
_DOT_SEGMENTS = {".", ".."}


def _unsafe(url: str) -> bool:
    return any(c == "\\" or unicodedata.category(c) in _UNSAFE_CATEGORIES for c in url)


def _parse(url: str) -> SplitResult | None:
    if _unsafe(url):
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


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if _UNRESERVED.fullmatch(char) else f"%{match.group(1).upper()}"


def normalised_path(path: str) -> str | None:
    """The path with escapes of unreserved characters decoded (RFC 3986, 6.2.2), or None
    when it holds a dot segment or an encoded slash or backslash."""
    if _ENCODED_SEPARATOR.search(path):
        return None
    normal = _ESCAPE.sub(_decode_unreserved, path)
    if any(segment in _DOT_SEGMENTS for segment in normal.split("/")):
        return None
    return normal


def url_problem(url: str) -> str | None:
    """Why `url` may never be used as a redirect target, or None when its form is fine."""
    parts = _parse(url)
    if parts is None:
        return "must be an absolute https URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain user credentials"
    if parts.scheme == "http" and parts.hostname not in _LOCALHOSTS:
        return "must use https"
    if normalised_path(parts.path) is None:
        return "must not contain '.' or '..' path segments or encoded slashes"
    return None


def _under(parts: SplitResult, prefix: SplitResult) -> bool:
    if (parts.scheme, parts.hostname, _port(parts)) != (prefix.scheme, prefix.hostname, _port(prefix)):
        return False
    path, base = normalised_path(parts.path), normalised_path(prefix.path)
    if path is None or base is None:
        return False
    base = base.rstrip("/")
    return not base or path == base or path.startswith(base + "/")


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
