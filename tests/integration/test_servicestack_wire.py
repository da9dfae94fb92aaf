"""What ServiceStack's own clients see on the wire: routes, binding, errors, jsconfig, JSONP.

Each case is what the original ServiceStack host answers, read from its source; the
rules and texts are listed in docs/servicestack.md.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import ALLOWED_ORIGIN, ROUTE, Api, Company, Reply, Stack

OPERATION = "StripeV1CreateCheckout"
ROUTES = [
    ROUTE,
    f"{ROUTE}.json",
    f"/api/{OPERATION}",
    f"/json/reply/{OPERATION}",
    f"/api/{OPERATION}.json",
    "/API/stripev1createcheckout",
    "/Json/Reply/STRIPEV1CREATECHECKOUT",
    "/Payment/Stripe/V1/Checkout",
]
JSON = "application/json; charset=utf-8"


def status_of(reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = reply.json["ResponseStatus"]
    return body


# -- predefined routes ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_the_seed_sample_gives_the_same_answer_through_every_route(
    api: Api, company: Company, stack: Stack, path: str
) -> None:
    reply = api.send("POST", path, company.request("booking-routes"))

    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"] == JSON
    assert set(reply.json) == {"SessionId", "Url", "Status"}
    assert reply.json["Status"] == "open"
    assert company.sessions("booking-routes")["current_session_id"] == reply.json["SessionId"]


# The published page's sample request, placeholders and all.
SEED_SAMPLE = (
    '{"CompanyId":"00000000-0000-0000-0000-000000000000","CountryCode":"String","Articles":[{"ArticleId":0,'
    '"ArticleTypeId":0,"Quantity":0}],"InternalReferenceId":"String","ConfirmationUrl":"String",'
    '"CancelUrl":"String","UiMode":"String"}'
)


def test_the_seeds_literal_sample_gets_the_same_validation_answer_through_every_route(api: Api) -> None:
    replies = [api.send("POST", path, raw=SEED_SAMPLE) for path in ROUTES]

    assert {reply.text for reply in replies} == {replies[0].text}
    assert replies[0].status == 400
    assert [(e["FieldName"], e["Message"]) for e in status_of(replies[0])["Errors"]] == [
        ("CompanyId", "'Company Id' must not be empty."),
        ("CountryCode", "The specified condition was not met for 'Country Code'."),
        ("Articles[0].ArticleId", "'Article Id' must be greater than '0'."),
        ("Articles[0].ArticleTypeId", "'Article Type Id' must be greater than '0'."),
        ("Articles[0].Quantity", "'Quantity' must be between 1 and 999. You entered 0."),
        ("UiMode", "The specified condition was not met for 'Ui Mode'."),
    ]
    assert status_of(replies[0])["Errors"][0]["Meta"] == {
        "PropertyName": "Company Id",
        "PropertyValue": "00000000000000000000000000000000",
    }


def test_an_unknown_operation_is_servicestacks_405(api: Api) -> None:
    reply = api.send("POST", "/api/NoSuchOperation", {})

    assert reply.status == 405
    assert reply.json == {
        "ResponseStatus": {
            "ErrorCode": "NotImplementedException",
            "Message": "The operation does not exist for this service",
            "Errors": [],
        }
    }


def test_a_verb_the_operation_has_no_method_for_is_405_after_validation(api: Api, company: Company) -> None:
    invalid = api.send("GET", f"/api/{OPERATION}")
    query = urlencode({**company.request(), "Articles": "[{ArticleId:42,ArticleTypeId:1}]"})
    valid = api.send("GET", f"/api/{OPERATION}", query=query)

    assert invalid.status == 400 and status_of(invalid)["ErrorCode"] == "NotEmpty"
    assert valid.status == 405
    assert status_of(valid) == {
        "ErrorCode": "NotImplementedException",
        "Message": "Could not find method named Get(StripeV1CreateCheckout) or Any(StripeV1CreateCheckout) "
        "on Service CheckoutService",
        "Errors": [],
    }


def test_predefined_routes_answer_cors_preflights(api: Api) -> None:
    reply = api.send(
        "OPTIONS",
        f"/api/{OPERATION}",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


# -- binding --------------------------------------------------------------------------------


def test_numbers_and_booleans_for_strings_and_digit_strings_for_integers_bind(
    api: Api, company: Company
) -> None:
    body = company.request(
        InternalReferenceId=12345, Articles=[{"ArticleId": "42", "ArticleTypeId": "1", "Quantity": "2"}]
    )

    reply = api.send("POST", f"/api/{OPERATION}", body)

    assert reply.status == 200, reply.text
    assert company.sessions("12345")["current_session_id"] == reply.json["SessionId"]


def test_a_form_body_binds_like_json_with_jsv_for_the_articles(api: Api, company: Company) -> None:
    form = {**company.request("booking-form"), "Articles": "[{ArticleId:42,ArticleTypeId:1,Quantity:1}]"}

    reply = api.send(
        "POST",
        f"/json/reply/{OPERATION}",
        raw=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert reply.status == 200, reply.text
    assert company.sessions("booking-form")["current_session_id"] == reply.json["SessionId"]


def test_a_form_value_that_does_not_convert_names_the_key_as_sent(api: Api, company: Company) -> None:
    form = {**company.request(), "companyid": "not-a-guid", "Articles": "[object Object]"}
    del form["CompanyId"]

    reply = api.send(
        "POST", ROUTE, raw=urlencode(form), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert reply.status == 400
    assert status_of(reply) == {
        "ErrorCode": "SerializationException",
        "Message": "Unable to bind to request 'StripeV1CreateCheckout'",
        "Errors": [
            {
                "ErrorCode": "SerializationException",
                "FieldName": "Articles",
                "Message": "'[object Object]' is an Invalid value for 'Articles'",
            },
            {
                "ErrorCode": "SerializationException",
                "FieldName": "companyid",
                "Message": "'not-a-guid' is an Invalid value for 'companyid'",
            },
        ],
    }


def test_the_query_string_fills_what_the_body_left_unset_and_overrides_nothing(
    api: Api, company: Company
) -> None:
    body = company.request("from-the-body")
    del body["CountryCode"]

    reply = api.post(body, query="CountryCode=NO&InternalReferenceId=from-the-query")

    assert reply.status == 200, reply.text
    assert company.sessions("from-the-body")["current_session_id"] == reply.json["SessionId"]


def test_json_is_read_whatever_the_content_type_says(api: Api, company: Company) -> None:
    reply = api.send(
        "POST",
        f"/api/{OPERATION}",
        raw=json.dumps(company.request()),
        headers={"Content-Type": "text/plain"},
    )

    assert reply.status == 200, reply.text


# -- error bodies ------------------------------------------------------------------------------


def test_a_validation_error_is_servicestacks_body_with_meta(api: Api, company: Company) -> None:
    reply = api.post(company.request(CompanyId=None, InternalReferenceId="r" * 201))

    assert reply.status == 400
    assert reply.json == {
        "ResponseStatus": {
            "ErrorCode": "NotEmpty",
            "Message": "'Company Id' must not be empty.",
            "Errors": [
                {
                    "ErrorCode": "NotEmpty",
                    "FieldName": "CompanyId",
                    "Message": "'Company Id' must not be empty.",
                    "Meta": {"PropertyName": "Company Id"},
                },
                {
                    "ErrorCode": "MaximumLength",
                    "FieldName": "InternalReferenceId",
                    "Message": "The length of 'Internal Reference Id' must be 200 characters or fewer. "
                    "You entered 201 characters.",
                    "Meta": {
                        "MinLength": "0",
                        "MaxLength": "200",
                        "TotalLength": "201",
                        "PropertyName": "Internal Reference Id",
                        "PropertyValue": "r" * 201,
                    },
                },
            ],
        }
    }


def test_a_body_that_is_no_object_is_a_serialization_exception(api: Api) -> None:
    reply = api.send("POST", f"/api/{OPERATION}", raw="[1,2]")

    assert reply.status == 400
    assert status_of(reply) == {
        "ErrorCode": "SerializationException",
        "Message": "Could not deserialize 'application/json' request using StripeV1CreateCheckout'\n"
        "Error: Type definitions should start with a '{', expecting serialized type "
        "'StripeV1CreateCheckout', got string starting with: [1,2]",
        "Errors": [],
    }


# -- formats and jsconfig ----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["format=json", "format=xml", "format=csv", "format="])
def test_format_json_is_json_and_unknown_formats_are_ignored(api: Api, company: Company, query: str) -> None:
    reply = api.post(company.request(), query=query)

    assert reply.status == 200
    assert reply.headers["Content-Type"] == JSON


@pytest.mark.parametrize(
    ("jsconfig", "keys"),
    [
        ("EmitCamelCaseNames:true", {"sessionId", "url", "status"}),
        ("eccn", {"sessionId", "url", "status"}),
        ("tc:cc", {"sessionId", "url", "status"}),
        ("TextCase:CamelCase", {"sessionId", "url", "status"}),
        ("EmitLowercaseUnderscoreNames:true", {"session_id", "url", "status"}),
        ("tc:sc", {"session_id", "url", "status"}),
        ("EmitCamelCaseNames:false", {"SessionId", "Url", "Status"}),
        ("tc:pc", {"SessionId", "Url", "Status"}),
        ("DateHandler:ISO8601,ExcludeTypeInfo", {"SessionId", "Url", "Status"}),
    ],
)
def test_jsconfig_casing_is_honoured_in_answers(
    api: Api, company: Company, jsconfig: str, keys: set[str]
) -> None:
    reply = api.post(company.request(), query=f"jsconfig={quote(jsconfig)}")

    assert reply.status == 200, reply.text
    assert set(reply.json) == keys


def test_jsconfig_casing_applies_to_errors_but_not_to_meta_keys(api: Api) -> None:
    reply = api.post({"CountryCode": "SE"}, query="jsconfig=tc:cc")

    status = reply.json["responseStatus"]
    assert status["errorCode"] == "NotEmpty"
    assert status["errors"][0] == {
        "errorCode": "NotEmpty",
        "fieldName": "CompanyId",
        "message": "'Company Id' must not be empty.",
        "meta": {"PropertyName": "Company Id"},
    }


def test_snake_case_requests_bind_when_snake_case_is_asked_for(api: Api, company: Company) -> None:
    snake = {
        "company_id": company.company_id,
        "country_code": "SE",
        "articles": [{"article_id": 42, "article_type_id": 1}],
        "internal_reference_id": "booking-snake",
    }

    reply = api.post(snake, query="jsconfig=EmitLowercaseUnderscoreNames:true")

    assert reply.status == 200, reply.text
    assert reply.json["status"] == "open"


# -- JSONP ---------------------------------------------------------------------------------


def test_jsonp_wraps_a_service_error_and_keeps_its_status(api: Api, company: Company, stack: Stack) -> None:
    paid = api.post(company.request("booking-jsonp-paid")).json["SessionId"]
    stack.emulator.complete(paid)

    reply = api.post(company.request("booking-jsonp-paid"), query="callback=onCheckout")

    assert reply.status == 409
    assert reply.headers["Content-Type"] == "text/javascript"
    assert reply.text.startswith('onCheckout({"ResponseStatus":{"ErrorCode":"AlreadyPaid"')
    assert reply.text.endswith(")")


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [("POST", ROUTE, "[1]"), ("POST", "/nowhere", "{}"), ("POST", "/api/NoSuchOperation", "{}")],
)
def test_jsonp_answers_errors_outside_the_service_with_200(
    api: Api, method: str, path: str, raw: str
) -> None:
    reply = api.send(method, path, raw=raw, query="callback=cb")

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/javascript"
    inner = json.loads(reply.text.removeprefix("cb(").removesuffix(")"))
    assert inner["ResponseStatus"]["ErrorCode"] in {
        "SerializationException",
        "NotFound",
        "NotImplementedException",
    }


def test_jsonp_takes_the_asked_casing(api: Api, company: Company) -> None:
    reply = api.post(company.request(), query="callback=cb&jsconfig=eccn")

    assert json.loads(reply.text[3:-1])["status"] == "open"
