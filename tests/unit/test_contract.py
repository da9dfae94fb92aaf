"""The wire models: ServiceStack's binding, the FluentValidation rules and their texts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from checkout.contract import (
    StripeCheckoutQueryResponse,
    StripeV1CreateCheckout,
    UiMode,
    field_name,
    to_request,
)
from checkout.locales import checkout_locale
from checkout.servicestack import Failure, ValidationFailed, bind_json

VALID: dict[str, Any] = {
    "CompanyId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "CountryCode": "SE",
    "Articles": [{"ArticleId": 1, "ArticleTypeId": 2}],
    "InternalReferenceId": "booking-1",
}


def parse(body: Any) -> StripeV1CreateCheckout:
    return to_request(StripeV1CreateCheckout, bind_json(StripeV1CreateCheckout, json.dumps(body)))


def errors_of(body: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(body)
    return [(f.error_code, f.field_name, f.message) for f in caught.value.failures]


def test_defaults_quantity_one_and_hosted_mode() -> None:
    request = parse(VALID)

    assert request.articles[0].quantity == 1
    assert request.ui_mode is UiMode.HOSTED
    assert request.confirmation_url is None and request.cancel_url is None


@pytest.mark.parametrize(
    "spelling",
    [
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "3F2504E04F8911D39A0C0305E82C3301",
        "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
        "(3f2504e0-4f89-11d3-9a0c-0305e82c3301)",
    ],
)
def test_guid_spellings_of_dotnet(spelling: str) -> None:
    request = parse({**VALID, "CompanyId": spelling})

    assert str(request.company_id) == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_empty_strings_for_optional_urls_mean_not_set() -> None:
    request = parse({**VALID, "ConfirmationUrl": "", "CancelUrl": " ", "UiMode": ""})

    assert request.confirmation_url is None and request.cancel_url is None
    assert request.ui_mode is UiMode.HOSTED


def test_the_last_spelling_of_a_property_wins_as_in_servicestack_text() -> None:
    assert parse({**VALID, "countrycode": "NO"}).country_code == "NO"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"CountryCode": "se"}, None),
        ({"CountryCode": "SWE"}, ("Predicate", "CountryCode", "The specified condition was not met for 'Country Code'.")),
        ({"CountryCode": None}, ("NotEmpty", "CountryCode", "'Country Code' must not be empty.")),
        ({"Articles": None}, ("NotEmpty", "Articles", "'Articles' must not be empty.")),
        ({"Articles": "x"}, ("NotEmpty", "Articles", "'Articles' must not be empty.")),
        ({"Articles": [5]}, ("NotEmpty", "Articles", "'Articles' must not be empty.")),
        ({"Articles": [{"ArticleId": 1, "ArticleTypeId": -1}]},
         ("GreaterThan", "Articles[0].ArticleTypeId", "'Article Type Id' must be greater than '0'.")),
        ({"Articles": [{"ArticleId": 1, "ArticleTypeId": 1, "Quantity": 0}]},
         ("InclusiveBetween", "Articles[0].Quantity", "'Quantity' must be between 1 and 999. You entered 0.")),
        ({"Articles": [{"ArticleId": 1.5, "ArticleTypeId": 1}]},
         ("GreaterThan", "Articles[0].ArticleId", "'Article Id' must be greater than '0'.")),
        ({"InternalReferenceId": "   "}, ("NotEmpty", "InternalReferenceId", "'Internal Reference Id' must not be empty.")),
        ({"UiMode": "Embedded_Page"}, ("Predicate", "UiMode", "The specified condition was not met for 'Ui Mode'.")),
        ({"ConfirmationUrl": "https://x/" + "a" * 2100},
         ("MaximumLength", "ConfirmationUrl",
          "The length of 'Confirmation Url' must be 2048 characters or fewer. You entered 2110 characters.")),
    ],
)  # fmt: skip
def test_field_rules(patch: dict[str, Any], expected: tuple[str, str, str] | None) -> None:
    body = {**VALID, **patch}
    if expected is None:
        parse(body)
    else:
        assert errors_of(body) == [expected]


def test_a_number_for_a_string_property_is_taken_as_its_text() -> None:
    request = parse({**VALID, "InternalReferenceId": 12345, "CountryCode": "se"})

    assert request.internal_reference_id == "12345"


def test_a_string_of_digits_for_an_integer_property_is_the_number() -> None:
    request = parse({**VALID, "Articles": [{"ArticleId": "42", "ArticleTypeId": "7", "Quantity": "3"}]})

    assert (request.articles[0].article_id, request.articles[0].article_type_id) == (42, 7)
    assert request.articles[0].quantity == 3


def test_field_names_as_the_client_knows_them() -> None:
    assert field_name(("body", "Articles", 3, "Quantity")) == "Articles[3].Quantity"
    assert field_name(("body",)) == ""


def test_meta_carries_the_placeholder_values() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse({**VALID, "Articles": [{"ArticleId": 1, "ArticleTypeId": 1, "Quantity": 1000}]})

    [failure] = caught.value.failures
    assert isinstance(failure, Failure)
    assert failure.meta == {
        "From": "1", "To": "999", "Value": "1000", "PropertyName": "Quantity", "PropertyValue": "1000",
        "CollectionIndex": "0",
    }  # fmt: skip


def test_response_omits_nulls_and_uses_pascal_case() -> None:
    wire = StripeCheckoutQueryResponse(session_id="cs_1", status="open", stripe_account="acct_1").to_wire()

    assert wire == {"SessionId": "cs_1", "Status": "open", "StripeAccount": "acct_1"}


@pytest.mark.parametrize(
    ("country", "locale"),
    [
        ("SE", "sv"),
        ("no", "nb"),
        ("DK", "da"),
        ("FI", "fi"),
        ("DE", "de"),
        ("GB", "en-GB"),
        ("CH", "auto"),
        ("AQ", "auto"),
    ],
)
def test_country_selects_the_checkout_locale(country: str, locale: str) -> None:
    assert checkout_locale(country) == locale
