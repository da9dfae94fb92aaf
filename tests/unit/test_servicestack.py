"""ServiceStack's rules, one by one: names, JSON and JSV binding, jsconfig, JSONP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from checkout.contract import ArticleToCreate, StripeV1CreateCheckout
from checkout.servicestack import (
    BindingFailed,
    Meta,
    Origin,
    TextCase,
    bind_json,
    bind_pairs,
    camel_case,
    jsonp_callback,
    parse_guid,
    parse_jsv,
    read_request,
    recase,
    render,
    snake_case,
    split_pascal_case,
    text_case,
)

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ("CompanyId", "Company Id"),
        ("InternalReferenceId", "Internal Reference Id"),
        ("UiMode", "Ui Mode"),
        ("Articles", "Articles"),
        ("ConfirmationUrl", "Confirmation Url"),
        ("HTTPStatusCode", "HTTP Status Code"),
    ],
)
def test_display_names_are_split_as_fluentvalidation_splits_them(name: str, display: str) -> None:
    assert split_pascal_case(name) == display


@pytest.mark.parametrize(
    ("name", "camel", "snake"),
    [
        ("SessionId", "sessionId", "session_id"),
        ("Url", "url", "url"),
        ("PaymentIntentClientSecret", "paymentIntentClientSecret", "payment_intent_client_secret"),
        ("URL", "url", "url"),
    ],
)
def test_property_casings_as_servicestack_text_writes_them(name: str, camel: str, snake: str) -> None:
    assert (camel_case(name), snake_case(name)) == (camel, snake)


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "bound"),
    [
        (12345, "12345"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        ("booking-1", "booking-1"),
        (None, None),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_any_json_value_for_a_string_property_is_taken_as_its_text(sent: Any, bound: str | None) -> None:
    assert (
        bind_json(StripeV1CreateCheckout, f'{{"InternalReferenceId": {_json(sent)}}}')["InternalReferenceId"]
        == bound
    )


@pytest.mark.parametrize(
    ("sent", "bound"),
    [
        (42, 42),
        ('"42"', 42),
        ('" 7 "', 7),
        ('"-3"', -3),
        ('"x"', 0),
        ("1.5", 0),
        ("true", 0),
        ("null", 0),
        ("2147483648", 0),
    ],
)
def test_integers_bind_from_numbers_and_digit_strings_and_nothing_else(sent: Any, bound: int) -> None:
    assert bind_json(ArticleToCreate, f'{{"ArticleId": {sent}}}')["ArticleId"] == bound


def test_a_value_that_does_not_convert_leaves_the_declared_default() -> None:
    assert bind_json(ArticleToCreate, '{"Quantity": "many"}')["Quantity"] == 1
    assert bind_json(ArticleToCreate, "{}") == {"ArticleId": 0, "ArticleTypeId": 0, "Quantity": 1}


@pytest.mark.parametrize(
    "spelling",
    [GUID, GUID.upper(), GUID.replace("-", ""), f"{{{GUID}}}", f"({GUID})", f"  {GUID} "],
)
def test_guids_parse_in_every_dotnet_spelling(spelling: str) -> None:
    assert parse_guid(spelling) == uuid.UUID(GUID)


@pytest.mark.parametrize(
    "spelling", ["not-a-guid", GUID[:-1], f"urn:uuid:{GUID}", f"{{{GUID}", GUID[:9] + GUID[10:]]
)
def test_other_guid_spellings_do_not_parse(spelling: str) -> None:
    assert parse_guid(spelling) is None


def test_names_bind_in_any_case_and_the_last_spelling_wins() -> None:
    bound = bind_json(StripeV1CreateCheckout, '{"countrycode": "SE", "COUNTRYCODE": "NO", "Unknown": 1}')

    assert bound["CountryCode"] == "NO"
    assert "Unknown" not in bound


def test_snake_case_names_bind_only_when_snake_case_is_on() -> None:
    body = '{"country_code": "SE", "articles": [{"article_id": 4}]}'

    assert bind_json(StripeV1CreateCheckout, body)["CountryCode"] is None
    snake = bind_json(StripeV1CreateCheckout, body, snake=True)
    assert snake["CountryCode"] == "SE" and snake["Articles"][0]["ArticleId"] == 4


@pytest.mark.parametrize("articles", ['"x"', "[5]", "[null]", '{"ArticleId": 1}'])
def test_a_list_that_does_not_convert_is_left_unset(articles: str) -> None:
    assert bind_json(StripeV1CreateCheckout, f'{{"Articles": {articles}}}')["Articles"] is None


@pytest.mark.parametrize("body", ["", "  ", "null"])
def test_an_empty_body_is_an_empty_request(body: str) -> None:
    assert bind_json(StripeV1CreateCheckout, body)["CompanyId"] is None


@pytest.mark.parametrize("body", ["[1]", '"text"', "42", "{not json"])
def test_a_body_that_is_no_object_is_a_serialization_failure(body: str) -> None:
    with pytest.raises(BindingFailed) as caught:
        bind_json(StripeV1CreateCheckout, body)

    assert caught.value.message.startswith(
        "Could not deserialize 'application/json' request using StripeV1CreateCheckout'\nError: "
    )


# -- query strings and forms ------------------------------------------------------------------


def test_jsv_lists_of_objects_with_and_without_quotes() -> None:
    assert parse_jsv('[{ArticleId:42,ArticleTypeId:1},{"ArticleId":"43"}]') == [
        {"ArticleId": "42", "ArticleTypeId": "1"},
        {"ArticleId": "43"},
    ]
    assert parse_jsv('{Name:"a,""b"""}') == {"Name": 'a,"b"'}


def test_pairs_bind_like_json_properties() -> None:
    bound = bind_pairs(
        StripeV1CreateCheckout,
        [
            ("companyId", GUID),
            ("Articles", "[{ArticleId:42,ArticleTypeId:1}]"),
            ("InternalReferenceId", "007"),
        ],
    )

    assert bound["CompanyId"] == uuid.UUID(GUID)
    assert bound["Articles"] == [{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}]
    assert bound["InternalReferenceId"] == "007"  # strings are never JSV-decoded


def test_pairs_that_do_not_convert_are_all_named_as_sent() -> None:
    with pytest.raises(BindingFailed) as caught:
        bind_pairs(StripeV1CreateCheckout, [("COMPANYID", "x"), ("articles", "[1,2]"), ("Ignored", "?")])

    assert caught.value.message == "Unable to bind to request 'StripeV1CreateCheckout'"
    assert [(e.field_name, e.message) for e in caught.value.errors] == [
        ("COMPANYID", "'x' is an Invalid value for 'COMPANYID'"),
        ("articles", "'[1,2]' is an Invalid value for 'articles'"),
    ]


def test_get_binds_the_query_string_and_post_only_fills_what_the_body_left_unset() -> None:
    query = [("CountryCode", "NO"), ("InternalReferenceId", "from-query")]

    got = read_request(StripeV1CreateCheckout, method="GET", body=None, content_type=None, query=query)
    posted = read_request(
        StripeV1CreateCheckout,
        method="POST",
        body='{"CountryCode": "SE"}',
        content_type="application/json",
        query=query,
    )

    assert (got["CountryCode"], got["InternalReferenceId"]) == ("NO", "from-query")
    assert (posted["CountryCode"], posted["InternalReferenceId"]) == ("SE", "from-query")


def test_a_form_body_binds_over_the_query_string() -> None:
    bound = read_request(
        StripeV1CreateCheckout,
        method="POST",
        body="CountryCode=DK",
        content_type="application/x-www-form-urlencoded; charset=utf-8",
        query=[("CountryCode", "NO"), ("UiMode", "embedded")],
    )

    assert (bound["CountryCode"], bound["UiMode"]) == ("DK", "embedded")


# -- jsconfig and JSONP -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jsconfig", "case"),
    [
        (None, TextCase.DEFAULT),
        ("EmitCamelCaseNames:true", TextCase.CAMEL),
        ("emitcamelcasenames", TextCase.CAMEL),
        ("eccn:1", TextCase.CAMEL),
        ("eccn:false", TextCase.DEFAULT),
        ("EmitLowercaseUnderscoreNames:true", TextCase.SNAKE),
        ("elun", TextCase.SNAKE),
        ("tc:cc", TextCase.CAMEL),
        ("TextCase:SnakeCase", TextCase.SNAKE),
        ("tc:pc", TextCase.PASCAL),
        ("eccn,tc:sc", TextCase.SNAKE),
        ("DateHandler:ISO8601,IncludeNullValues", TextCase.DEFAULT),
        ("tc:unknown", TextCase.DEFAULT),
    ],
)
def test_jsconfig_casing_options(jsconfig: str | None, case: TextCase) -> None:
    assert text_case(jsconfig) is case


def test_recasing_leaves_meta_dictionaries_alone() -> None:
    body = {
        "ResponseStatus": {"Errors": [{"FieldName": "CompanyId", "Meta": Meta(PropertyName="Company Id")}]}
    }

    assert recase(body, TextCase.SNAKE) == {
        "response_status": {"errors": [{"field_name": "CompanyId", "meta": {"PropertyName": "Company Id"}}]}
    }


@pytest.mark.parametrize(
    ("callback", "echoed"),
    [
        ("cb", "cb"),
        ("jQuery.cb_1", "jQuery.cb_1"),
        ("alert(1)//", "alert_1___"),
        ("<script>", "_script_"),
        ("", None),
    ],
)
def test_jsonp_callback_names_are_made_safe_not_refused(callback: str, echoed: str | None) -> None:
    assert jsonp_callback(callback) == echoed


def test_jsonp_bytes_and_content_types() -> None:
    body = {"Status": "open"}

    assert render(200, body, {}).content_type == "application/json; charset=utf-8"
    wrapped = render(409, body, {"callback": "cb"})
    assert (wrapped.status, wrapped.content_type, wrapped.body) == (
        409,
        "text/javascript",
        'cb({"Status":"open"})',
    )
    assert render(404, body, {"callback": "cb"}, Origin.HOST).status == 200
    assert render(400, body, {"callback": "cb"}, Origin.VALIDATION).body == '{"Status":"open"}'


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
