"""The contract of POST /payment/stripe/v1/checkout, through the real handler.

Each request is an API Gateway REST proxy event; DynamoDB and Secrets Manager are moto
over HTTP; Stripe is the emulator reached by the real stripe-python client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ALLOWED_ORIGIN, ROUTE, SITE, Api, Company, Reply, Stack, onboard


def assert_error_body(reply: Reply, status: int, error_code: str, *fields: str) -> dict[str, Any]:
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    status_body = body["ResponseStatus"]
    assert status_body["ErrorCode"] == error_code
    assert status_body["Message"]
    assert [e["FieldName"] for e in status_body.get("Errors", []) if "FieldName" in e] == list(fields)
    if status_body.get("Errors"):
        assert status_body["ErrorCode"] == status_body["Errors"][0]["ErrorCode"]
        assert status_body["Message"] == status_body["Errors"][0]["Message"]
    return status_body  # type: ignore[no-any-return]


# -- the happy paths ---------------------------------------------------------------------


def test_seed_sample_request_in_hosted_mode_returns_an_open_session_with_url(
    api: Api, company: Company, stack: Stack
) -> None:
    reply = api.post(company.request("booking-1"))

    assert reply.status == 200, reply.text
    body = reply.json
    assert set(body) == {"SessionId", "Url", "Status"}
    assert body["Status"] == "open"
    assert body["SessionId"].startswith("cs_test_")
    [session] = stack.emulator.sessions()[-1:]
    assert session["id"] == body["SessionId"]
    assert body["Url"] == session["url"]


def test_embedded_mode_returns_client_secret_and_no_url(api: Api, company: Company) -> None:
    body = company.request(UiMode="embedded")
    del body["CancelUrl"]

    reply = api.post(body)

    assert reply.status == 200, reply.text
    assert "Url" not in reply.json
    assert reply.json["ClientSecret"].startswith(reply.json["SessionId"] + "_secret_")
    assert reply.json["Status"] == "open"


def test_session_is_priced_from_the_catalogue_with_reference_locale_and_metadata(
    api: Api, company: Company, stack: Stack
) -> None:
    body = company.request(
        "booking-77",
        CountryCode="no",
        Articles=[
            {"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 2},
            {"ArticleId": 43, "ArticleTypeId": 1},
        ],
    )

    reply = api.post(body)

    assert reply.status == 200, reply.text
    [create] = [
        r for r in stack.emulator.requests() if r.method == "POST" and r.path == "/v1/checkout/sessions"
    ][-1:]
    params = create.params
    assert params["mode"] == "payment"
    assert params["ui_mode"] == "hosted_page"
    assert params["locale"] == "nb"
    assert params["client_reference_id"] == "booking-77"
    assert params["success_url"] == f"{SITE}/booking/confirmed"
    assert params["cancel_url"] == f"{SITE}/booking/cancelled"
    assert params["line_items"] == [
        {
            "quantity": "2",
            "price_data": {
                "currency": "sek",
                "unit_amount": "45000",
                "product_data": {"name": "Haircut 45 min"},
            },
        },
        {
            "quantity": "1",
            "price_data": {"currency": "sek", "unit_amount": "15000", "product_data": {"name": "Beard trim"}},
        },
    ]
    expected_metadata = {
        "CompanyId": company.company_id,
        "InternalReferenceId": "booking-77",
        "ArticleTypeIds": "1",
    }
    assert params["metadata"] == expected_metadata
    assert params["payment_intent_data"] == {"metadata": expected_metadata}
    assert create.headers["stripe-version"] == "2026-10-28.endive"
    assert create.headers["idempotency-key"].startswith("checkout-")
    session = next(s for s in stack.emulator.sessions() if s["id"] == reply.json["SessionId"])
    assert session["amount_total"] == 2 * 45000 + 15000


def test_prices_in_the_request_are_ignored(api: Api, company: Company, stack: Stack) -> None:
    body = company.request(Articles=[{"ArticleId": 42, "ArticleTypeId": 1, "UnitAmount": 1, "Price": 1}])

    reply = api.post(body)

    assert reply.status == 200
    session = next(s for s in stack.emulator.sessions() if s["id"] == reply.json["SessionId"])
    assert session["amount_total"] == 45000


def test_property_names_bind_case_insensitively_and_unknown_ones_are_ignored(
    api: Api, company: Company
) -> None:
    body = {
        "companyId": company.company_id.upper().replace("-", ""),
        "COUNTRYCODE": "se",
        "articles": [{"articleid": 42, "articleTypeId": 1, "quantity": 1}],
        "internalReferenceId": "booking-case",
        "uimode": "HOSTED",
        "SomethingElse": {"ignored": True},
    }

    reply = api.post(body)

    assert reply.status == 200, reply.text


@pytest.mark.parametrize(
    "spelling",
    [
        "{{{}}}",  # braces
        "{}",  # plain dashed
    ],
)
def test_company_id_accepts_the_usual_guid_spellings(api: Api, company: Company, spelling: str) -> None:
    reply = api.post(company.request(CompanyId=spelling.format(company.company_id)))

    assert reply.status == 200, reply.text


def test_confirmation_url_falls_back_to_the_company_default(api: Api, company: Company, stack: Stack) -> None:
    body = company.request()
    del body["ConfirmationUrl"]

    reply = api.post(body)

    assert reply.status == 200, reply.text
    create = [
        r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions" and r.method == "POST"
    ][-1]
    assert create.params["success_url"] == f"{SITE}/booking/done"


def test_connect_company_sessions_live_on_the_connected_account(api: Api, stack: Stack) -> None:
    connected = onboard(stripe_account="acct_1ConnectedSalon")

    reply = api.post(connected.request(UiMode="embedded", CancelUrl=None))

    assert reply.status == 200, reply.text
    assert reply.json["StripeAccount"] == "acct_1ConnectedSalon"
    assert [s["id"] for s in stack.emulator.sessions("acct_1ConnectedSalon")][-1] == reply.json["SessionId"]
    assert reply.json["SessionId"] not in [s["id"] for s in stack.emulator.sessions()]


# -- earlier sessions of the reference ---------------------------------------------------


def test_second_request_for_a_reference_expires_the_first_and_becomes_current(
    api: Api, company: Company, stack: Stack
) -> None:
    first = api.post(company.request("booking-2")).json["SessionId"]

    second = api.post(company.request("booking-2"))

    assert second.status == 200
    assert second.json["SessionId"] != first
    statuses = {s["id"]: s["status"] for s in stack.emulator.sessions()}
    assert statuses[first] == "expired"
    assert statuses[second.json["SessionId"]] == "open"
    record = company.sessions("booking-2")
    assert record["current_session_id"] == second.json["SessionId"]
    assert [(s["session_id"], s["status"], s["current"]) for s in record["sessions"]] == [
        (first, "expired", False),
        (second.json["SessionId"], "open", True),
    ]


def test_other_references_are_left_alone(api: Api, company: Company, stack: Stack) -> None:
    other = api.post(company.request("booking-a")).json["SessionId"]

    api.post(company.request("booking-b"))

    assert {s["id"]: s["status"] for s in stack.emulator.sessions()}[other] == "open"


def test_a_prior_paid_while_the_new_session_was_created_is_compensated_with_409(
    api: Api, company: Company, stack: Stack
) -> None:
    paid = api.post(company.request("booking-paid")).json["SessionId"]
    stack.emulator.complete(paid)  # paid, and the service has not heard of it yet

    reply = api.post(company.request("booking-paid"))

    # The new session was created beside the expiry of the prior; the prior turned out
    # paid, so the new one was expired again and recorded, never current.
    assert_error_body(reply, 409, "AlreadyPaid")
    statuses = {s["id"]: s["status"] for s in stack.emulator.sessions()}
    record = company.sessions("booking-paid")
    assert record["paid_session_id"] == paid
    assert record["current_session_id"] == paid
    assert record["open_session_ids"] == []
    assert {s["session_id"]: s["status"] for s in record["sessions"]} == {
        sid: status
        for sid, status in statuses.items()
        if sid in {s["session_id"] for s in record["sessions"]}
    }
    assert sorted(s["status"] for s in record["sessions"]) == ["complete", "expired"]
    assert [s["state"] for s in record["sessions"] if s["session_id"] == paid] == ["paid"]
    # ...and it stays paid without asking Stripe again.
    requests_before = len(stack.emulator.requests())
    assert_error_body(api.post(company.request("booking-paid")), 409, "AlreadyPaid")
    assert len(stack.emulator.requests()) == requests_before


def test_a_session_that_expired_at_stripe_on_its_own_is_harmless(
    api: Api, company: Company, stack: Stack
) -> None:
    first = api.post(company.request("booking-old")).json["SessionId"]
    stack.emulator._state.sessions[("", first)]["expires_at"] = 0  # Stripe's 24 h are over

    reply = api.post(company.request("booking-old"))

    assert reply.status == 200
    assert [s["status"] for s in company.sessions("booking-old")["sessions"]] == ["expired", "open"]


# -- validation --------------------------------------------------------------------------


def test_empty_articles_is_a_400_naming_the_field(api: Api, company: Company) -> None:
    reply = api.post(company.request(Articles=[]))

    status = assert_error_body(reply, 400, "NotEmpty", "Articles")
    assert status["Message"] == "'Articles' must not be empty."


def test_every_failing_field_is_listed_with_its_client_name(api: Api) -> None:
    reply = api.post(
        {
            "CompanyId": "not-a-guid",
            "CountryCode": "XX",
            "Articles": [{"ArticleId": 0, "ArticleTypeId": 1, "Quantity": 1000}, {"ArticleTypeId": "x"}],
            "InternalReferenceId": "",
            "UiMode": "popup",
        }
    )

    status = assert_error_body(
        reply,
        400,
        "NotEmpty",
        "CompanyId",
        "CountryCode",
        "Articles[0].ArticleId",
        "Articles[0].Quantity",
        "Articles[1].ArticleId",
        "Articles[1].ArticleTypeId",
        "InternalReferenceId",
        "UiMode",
    )
    assert [e["Message"] for e in status["Errors"]] == [
        "'Company Id' must not be empty.",
        "The specified condition was not met for 'Country Code'.",
        "'Article Id' must be greater than '0'.",
        "'Quantity' must be between 1 and 999. You entered 1000.",
        "'Article Id' must be greater than '0'.",
        "'Article Type Id' must be greater than '0'.",
        "'Internal Reference Id' must not be empty.",
        "The specified condition was not met for 'Ui Mode'.",
    ]


def test_missing_required_fields_are_400(api: Api) -> None:
    reply = api.post({})

    assert_error_body(reply, 400, "NotEmpty", "CompanyId", "CountryCode", "Articles", "InternalReferenceId")


def test_the_empty_guid_of_the_seed_sample_is_rejected(api: Api, company: Company) -> None:
    reply = api.post(company.request(CompanyId="00000000-0000-0000-0000-000000000000"))

    assert_error_body(reply, 400, "NotEmpty", "CompanyId")


def test_more_than_100_articles_is_a_400(api: Api, company: Company) -> None:
    reply = api.post(company.request(Articles=[{"ArticleId": 42, "ArticleTypeId": 1}] * 101))

    assert_error_body(reply, 400, "Predicate", "Articles")


def test_reference_longer_than_200_characters_is_a_400(api: Api, company: Company) -> None:
    status = assert_error_body(
        api.post(company.request("r" * 201)), 400, "MaximumLength", "InternalReferenceId"
    )
    assert status["Message"] == (
        "The length of 'Internal Reference Id' must be 200 characters or fewer. You entered 201 characters."
    )


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_malformed_or_non_object_bodies_are_serialization_errors(api: Api, raw: str) -> None:
    reply = api.send("POST", raw=raw)

    status = assert_error_body(reply, 400, "SerializationException")
    assert status["Message"].startswith(
        "Could not deserialize 'application/json' request using StripeV1CreateCheckout'"
    )


@pytest.mark.parametrize("raw", ["null", ""])
def test_an_empty_body_is_an_empty_request(api: Api, raw: str) -> None:
    reply = api.send("POST", raw=raw)

    assert_error_body(reply, 400, "NotEmpty", "CompanyId", "CountryCode", "Articles", "InternalReferenceId")


def test_embedded_mode_rejects_cancel_url(api: Api, company: Company, stack: Stack) -> None:
    before = len(stack.emulator.sessions())

    reply = api.post(company.request(UiMode="embedded"))

    assert_error_body(reply, 400, "NotAllowed", "CancelUrl")
    assert len(stack.emulator.sessions()) == before


def test_unknown_article_is_a_400_naming_its_position(api: Api, company: Company) -> None:
    reply = api.post(
        company.request(
            Articles=[{"ArticleId": 42, "ArticleTypeId": 1}, {"ArticleId": 999, "ArticleTypeId": 1}]
        )
    )

    assert_error_body(reply, 400, "NotFound", "Articles[1].ArticleId")


def test_article_of_another_type_is_not_found(api: Api, company: Company) -> None:
    assert_error_body(
        api.post(company.request(Articles=[{"ArticleId": 42, "ArticleTypeId": 2}])), 400, "NotFound",
        "Articles[0].ArticleId",
    )  # fmt: skip


def test_inactive_article_cannot_be_bought(api: Api, company: Company) -> None:
    from tests.conftest import admin

    admin(
        "article", "put", "--company-id", company.company_id, "--article-type-id", "1", "--article-id", "43",
        "--name", "Retired", "--unit-amount", "100", "--currency", "SEK", "--inactive",
    )  # fmt: skip

    reply = api.post(company.request(Articles=[{"ArticleId": 43, "ArticleTypeId": 1}]))

    assert_error_body(reply, 400, "NotFound", "Articles[0].ArticleId")


def test_articles_in_different_currencies_are_a_400(api: Api, company: Company) -> None:
    reply = api.post(
        company.request(
            Articles=[{"ArticleId": 42, "ArticleTypeId": 1}, {"ArticleId": 7, "ArticleTypeId": 2}]
        )
    )

    assert_error_body(reply, 400, "CurrencyMismatch", "Articles")


def test_a_disabled_company_is_not_configured_for_its_own_key(api: Api, stack: Stack) -> None:
    disabled = onboard(extra=("--disabled",))

    assert_error_body(api.post(disabled.request()), 400, "CheckoutNotConfigured", "CompanyId")


# -- open redirects --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "url", "code"),
    [
        ("ConfirmationUrl", "https://evil.example.net/phish", "UrlNotAllowed"),
        ("ConfirmationUrl", "https://booking.example.com.evil.net/", "UrlNotAllowed"),
        ("ConfirmationUrl", "https://booking.example.com@evil.net/", "InvalidUrl"),
        ("ConfirmationUrl", "http://booking.example.com/ok", "InvalidUrl"),
        ("ConfirmationUrl", "javascript:alert(1)", "InvalidUrl"),
        ("ConfirmationUrl", "/relative/path", "InvalidUrl"),
        ("CancelUrl", "https://evil.example.net/", "UrlNotAllowed"),
        ("CancelUrl", "https://booking.example.com\\@evil.net/", "InvalidUrl"),
    ],
)
def test_redirect_urls_must_be_https_and_allowed_for_the_company(
    api: Api, company: Company, field: str, url: str, code: str
) -> None:
    reply = api.post(company.request(**{field: url}))

    assert_error_body(reply, 400, code, field)


def test_plain_http_is_allowed_for_localhost_when_the_company_allows_it(api: Api, stack: Stack) -> None:
    local = onboard(prefixes=("http://localhost:3000/",), confirmation_url=None)

    reply = api.post(local.request(ConfirmationUrl="http://localhost:3000/done", CancelUrl=None))

    assert reply.status == 200, reply.text


def test_company_without_default_needs_a_confirmation_url(api: Api, stack: Stack) -> None:
    bare = onboard(confirmation_url=None)
    body = bare.request()
    del body["ConfirmationUrl"]

    assert_error_body(api.post(body), 400, "NotEmpty", "ConfirmationUrl")


# -- routes, formats, JSONP, CORS ----------------------------------------------------------


def test_json_suffix_and_format_query_give_json(api: Api, company: Company) -> None:
    suffixed = api.send("POST", f"{ROUTE}.json", company.request())
    formatted = api.post(company.request(), query="format=json")

    for reply in (suffixed, formatted):
        assert reply.status == 200, reply.text
        assert reply.headers["Content-Type"].startswith("application/json")


def test_other_formats_are_ignored(api: Api, company: Company) -> None:
    reply = api.post(company.request(), query="format=xml")

    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"


def test_jsonp_callback_wraps_the_json(api: Api, company: Company) -> None:
    reply = api.post(company.request(), query="callback=Booking.onCheckout")

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/javascript"
    assert reply.text.startswith("Booking.onCheckout(") and reply.text.endswith(")")
    inner = reply.text[len("Booking.onCheckout(") : -1]
    assert json.loads(inner)["Status"] == "open"


def test_jsonp_leaves_validation_errors_unwrapped_as_servicestack_does(api: Api) -> None:
    reply = api.post({}, query="callback=cb")

    assert reply.status == 400
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.json["ResponseStatus"]["ErrorCode"] == "NotEmpty"


@pytest.mark.parametrize(
    ("callback", "echoed"),
    [
        ("alert(1)//", "alert_1___"),
        ("a-b", "a_b"),
        ("x;alert(1)", "x_alert_1_"),
        ("jQuery.cb_1", "jQuery.cb_1"),
    ],
)
def test_jsonp_callbacks_are_made_safe_as_servicestack_does(
    api: Api, company: Company, callback: str, echoed: str
) -> None:
    from urllib.parse import quote

    reply = api.post(company.request(), query=f"callback={quote(callback)}")

    assert reply.status == 200
    assert reply.text.startswith(f"{echoed}(")


@pytest.mark.parametrize(
    ("callback", "echoed"),
    [
        ("caf\u00e9", "caf_"),
        ("c\uff43", "c_"),
        ("c\u0441", "c_"),
        ("cb.x\u00fc", "cb.x_"),
        ("cb\u0660", "cb_"),
    ],
)
def test_jsonp_callbacks_are_echoed_in_ascii_only(
    api: Api, company: Company, callback: str, echoed: str
) -> None:
    from urllib.parse import quote

    reply = api.post(company.request(), query=f"callback={quote(callback)}")

    assert reply.text.startswith(f"{echoed}(")


def test_unknown_route_is_404(api: Api) -> None:
    assert_error_body(api.send("POST", "/payment/stripe/v2/checkout", {}), 404, "NotFound")


def test_wrong_method_on_the_route_is_405(api: Api) -> None:
    reply = api.send("GET", ROUTE)

    assert_error_body(reply, 405, "MethodNotAllowed")
    assert "POST" in reply.headers["Allow"]


def test_cors_preflight_from_an_allowed_origin(api: Api) -> None:
    reply = api.send(
        "OPTIONS",
        ROUTE,
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    assert "x-api-key" in reply.headers["Access-Control-Allow-Headers"].lower()


def test_cors_headers_on_answers_to_allowed_origins_only(api: Api, company: Company) -> None:
    allowed = api.post(
        company.request(), headers={"Content-Type": "application/json", "Origin": ALLOWED_ORIGIN}
    )
    foreign = api.post(
        company.request(), headers={"Content-Type": "application/json", "Origin": "https://evil.test"}
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_preflight_from_a_foreign_origin_grants_nothing(api: Api) -> None:
    reply = api.send(
        "OPTIONS", ROUTE, headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
    )

    assert "Access-Control-Allow-Origin" not in reply.headers


def test_every_answer_is_uncacheable_unsniffable_and_varies_on_origin(api: Api, company: Company) -> None:
    embedded = company.request(UiMode="embedded", CancelUrl=None)
    origin = {"Content-Type": "application/json", "Origin": ALLOWED_ORIGIN}
    replies = {
        "client secret": api.post(embedded),
        "client secret to an allowed origin": api.post(embedded, headers=origin),
        "validation error": api.post({}),
        "jsonp": api.post(company.request(), query="callback=cb"),
        "jsonp error": api.post({}, query="callback=cb"),
        "unknown route": api.send("POST", "/payment/stripe/v2/checkout", {}),
        "wrong method": api.send("GET", ROUTE),
        "preflight": api.send(
            "OPTIONS", ROUTE, headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}
        ),
    }

    assert "ClientSecret" in replies["client secret"].json
    for name, reply in replies.items():
        assert reply.headers.get("Cache-Control") == "no-store", name
        assert reply.headers.get("X-Content-Type-Options") == "nosniff", name
        assert "Origin" in [v.strip() for v in reply.headers.get("Vary", "").split(",")], name


# -- failures and bugs -------------------------------------------------------------------


@pytest.mark.injects_bug
def test_an_unexpected_bug_is_a_500_without_details(
    api: Api, company: Company, handler_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(request: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internals of the service")

    monkeypatch.setattr(handler_module.SERVICES.checkout, "create_checkout", explode)

    reply = api.post(company.request())

    status = assert_error_body(reply, 500, "InternalError")
    assert "internals" not in reply.text and "Traceback" not in reply.text
    assert status["Message"] == "An unexpected error occurred; it has been logged."
