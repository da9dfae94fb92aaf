"""The wire models: ServiceStack-style binding and the field errors clients see."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from checkout.contract import (
    StripeCheckoutQueryResponse,
    StripeV1CreateCheckout,
    UiMode,
    field_errors,
    field_name,
)
from checkout.errors import FieldError
from checkout.locales import checkout_locale

VALID: dict[str, Any] = {
    "CompanyId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "CountryCode": "SE",
    "Articles": [{"ArticleId": 1, "ArticleTypeId": 2}],
    "InternalReferenceId": "booking-1",
}


def errors_of(body: Any) -> list[FieldError]:
    with pytest.raises(ValidationError) as caught:
        StripeV1CreateCheckout.model_validate(body)
    return field_errors(caught.value.errors())


def test_defaults_quantity_one_and_hosted_mode() -> None:
    request = StripeV1CreateCheckout.model_validate(VALID)

    assert request.articles[0].quantity == 1
    assert request.ui_mode is UiMode.HOSTED
    assert request.confirmation_url is None and request.cancel_url is None


@pytest.mark.parametrize(
    "spelling",
    [
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "3F2504E04F8911D39A0C0305E82C3301",
        "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}",
        "urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    ],
)
def test_guid_spellings(spelling: str) -> None:
    request = StripeV1CreateCheckout.model_validate({**VALID, "CompanyId": spelling})

    assert str(request.company_id) == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_empty_strings_for_optional_urls_mean_not_set() -> None:
    request = StripeV1CreateCheckout.model_validate(
        {**VALID, "ConfirmationUrl": "", "CancelUrl": " ", "UiMode": ""}
    )

    assert request.confirmation_url is None and request.cancel_url is None
    assert request.ui_mode is UiMode.HOSTED


def test_first_spelling_of_a_property_wins() -> None:
    request = StripeV1CreateCheckout.model_validate({**VALID, "countrycode": "NO"})

    assert request.country_code == "SE"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"CountryCode": "se"}, None),
        ({"CountryCode": "SWE"}, FieldError("CountryCode", "CountryCode", "'CountryCode' must be an ISO 3166-1 alpha-2 country code, such as SE.")),
        ({"CountryCode": None}, FieldError("NotEmpty", "CountryCode", "'CountryCode' must not be empty.")),
        ({"Articles": None}, FieldError("NotEmpty", "Articles", "'Articles' must not be empty.")),
        ({"Articles": "x"}, FieldError("InvalidType", "Articles", "'Articles' must be a list.")),
        ({"Articles": [5]}, FieldError("InvalidType", "Articles[0]", "'Articles[0]' must be an object.")),
        ({"Articles": [{"ArticleId": 1, "ArticleTypeId": -1}]},
         FieldError("GreaterThan", "Articles[0].ArticleTypeId", "'Articles[0].ArticleTypeId' must be greater than '0'.")),
        ({"Articles": [{"ArticleId": 1, "ArticleTypeId": 1, "Quantity": 0}]},
         FieldError("InclusiveBetween", "Articles[0].Quantity", "'Articles[0].Quantity' must be between 1 and 999.")),
        ({"Articles": [{"ArticleId": 1.5, "ArticleTypeId": 1}]},
         FieldError("InvalidType", "Articles[0].ArticleId", "'Articles[0].ArticleId' must be a whole number.")),
        ({"InternalReferenceId": "   "}, FieldError("NotEmpty", "InternalReferenceId", "'InternalReferenceId' must not be empty.")),
        ({"InternalReferenceId": 12}, FieldError("InvalidType", "InternalReferenceId", "'InternalReferenceId' must be a string.")),
        ({"UiMode": "Embedded_Page"}, FieldError("UiMode", "UiMode", "'UiMode' must be one of: hosted, embedded.")),
        ({"ConfirmationUrl": "https://x/" + "a" * 2100},
         FieldError("MaximumLength", "ConfirmationUrl", "'ConfirmationUrl' must be 2048 characters or fewer.")),
    ],
)  # fmt: skip
def test_field_rules(patch: dict[str, Any], expected: FieldError | None) -> None:
    body = {**VALID, **patch}
    if expected is None:
        StripeV1CreateCheckout.model_validate(body)
    else:
        assert errors_of(body) == [expected]


def test_a_non_object_body_is_one_body_error() -> None:
    assert [e.error_code for e in errors_of([VALID])] == ["InvalidBody"]


def test_field_names_as_the_client_knows_them() -> None:
    assert field_name(("body", "Articles", 3, "Quantity")) == "Articles[3].Quantity"
    assert field_name(("body",)) == ""


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
