"""docs/openapi.json is generated from the models and must be current."""

from __future__ import annotations

import json

from localdev.openapi import DOCUMENT, openapi_document


def test_committed_openapi_document_is_current() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == openapi_document(), (
        "docs/openapi.json is stale: run ./dev openapi"
    )


def test_openapi_document_describes_the_contract() -> None:
    document = json.loads(openapi_document())
    operation = document["paths"]["/payment/stripe/v1/checkout"]["post"]
    schemas = document["components"]["schemas"]

    assert operation["operationId"] == "StripeV1CreateCheckout"
    assert set(operation["responses"]) == {"200", "400", "403", "409", "429", "502", "503", "504"}
    assert set(schemas["StripeV1CreateCheckout"]["required"]) == {
        "CompanyId", "CountryCode", "Articles", "InternalReferenceId",
    }  # fmt: skip
    assert set(schemas["StripeCheckoutQueryResponse"]["properties"]) == {
        "SessionId", "Url", "Status", "ClientSecret", "CustomerId", "PaymentIntentClientSecret",
        "PaymentIntentId", "StripeAccount",
    }  # fmt: skip
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "x-api-key"
