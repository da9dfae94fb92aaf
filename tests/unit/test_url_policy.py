"""Open-redirect protection: which URLs a company's payers may be sent to."""

from __future__ import annotations

import pytest

from checkout.url_policy import is_allowed, url_problem

PREFIXES = ["https://booking.example.com/", "https://shop.example.org/sv/checkout", "http://localhost:3000"]


@pytest.mark.parametrize(
    "url",
    [
        "https://booking.example.com/",
        "https://booking.example.com/any/path?x=1#top",
        "https://BOOKING.example.com:443/x",
        "https://shop.example.org/sv/checkout",
        "https://shop.example.org/sv/checkout/done",
        "http://localhost:3000/return",
    ],
)
def test_urls_under_an_allowed_prefix_pass(url: str) -> None:
    assert url_problem(url) is None
    assert is_allowed(url, PREFIXES)


@pytest.mark.parametrize(
    "url",
    [
        "https://booking.example.com.evil.net/",
        "https://evilbooking.example.com/",
        "https://booking.example.com:8443/",
        "https://shop.example.org/sv/checkout-evil",
        "https://shop.example.org/sv/",
        "https://shop.example.org/sv/checkout/../../admin".replace("/../..", "%2F..%2F.."),
        "http://localhost:3001/",
    ],
)
def test_urls_outside_every_prefix_are_refused(url: str) -> None:
    assert not is_allowed(url, PREFIXES)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://booking.example.com/", "must use https"),
        ("https://user:pw@booking.example.com/", "must not contain user credentials"),
        ("https://booking.example.com@evil.net/", "must not contain user credentials"),
        ("https://booking.example.com\\@evil.net/", "must be an absolute https URL"),
        ("javascript:alert(1)", "must be an absolute https URL"),
        ("//evil.net/path", "must be an absolute https URL"),
        ("/relative", "must be an absolute https URL"),
        ("https://booking.example.com/\nSet-Cookie:x", "must be an absolute https URL"),
        ("https://booking.example.com:99999/", "must be an absolute https URL"),
        ("ftp://booking.example.com/", "must be an absolute https URL"),
    ],
)
def test_malformed_or_unsafe_urls_are_named(url: str, problem: str) -> None:
    assert url_problem(url) == problem
    assert not is_allowed(url, PREFIXES)


def test_no_prefixes_allow_nothing() -> None:
    assert not is_allowed("https://booking.example.com/", [])


@pytest.mark.parametrize(
    "url",
    [
        "https://booking.example.com/../admin",
        "https://shop.example.org/sv/checkout/../../admin",
        "https://shop.example.org/sv/checkout/%2e%2e/%2E%2E/admin",
        "https://shop.example.org/sv/checkout/.%2e/admin",
        "https://shop.example.org/sv/checkout/%2e./admin",
        "https://shop.example.org/sv/checkout/./done",
        "https://shop.example.org/sv/checkout/..",
        "https://shop.example.org/sv/checkout%2f..%2f..%2fadmin",
        "https://shop.example.org/sv/checkout%5c..%5cadmin",
    ],
)
def test_dot_segments_and_encoded_slashes_are_refused_before_the_prefix_check(url: str) -> None:
    assert url_problem(url) == "must not contain '.' or '..' path segments or encoded slashes"
    assert not is_allowed(url, PREFIXES)


@pytest.mark.parametrize(
    "character",
    [
        "\u00a0",
        "\u1680",
        "\u2000",
        "\u2007",
        "\u200b",
        "\u2028",
        "\u2029",
        "\u202e",
        "\u3000",
        "\ufeff",
        "\u0085",
    ],
)
def test_whitespace_and_invisible_characters_of_any_script_are_refused(character: str) -> None:
    url = f"https://booking.example.com/done{character}x"

    assert url_problem(url) == "must be an absolute https URL"
    assert not is_allowed(url, PREFIXES)


def test_paths_are_compared_after_decoding_unreserved_escapes() -> None:
    assert is_allowed("https://shop.example.org/sv/%63heckout/done", PREFIXES)
    assert is_allowed("https://shop.example.org/sv/checkout/d%C3%B6ne", PREFIXES)
    assert not is_allowed("https://shop.example.org/sv/%63heckout-evil", PREFIXES)
