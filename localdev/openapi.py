"""The OpenAPI document of the checkout API, generated from the contract's models.

`./dev openapi` writes it to docs/openapi.json; `./dev openapi --check` (and the test
suite) fail when the committed file is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server
from aws_lambda_powertools.event_handler.openapi.params import Body

from checkout.contract import ErrorResponse
from checkout.operations import OPERATIONS, Operation

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def _error_responses(operation: Operation) -> dict[int, Any]:
    return {
        status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
        for status, text in operation.errors
    }


def _document_app() -> APIGatewayRestResolver:
    """A resolver whose routes are the operations' custom routes, typed by their models."""
    app = APIGatewayRestResolver(enable_validation=True)
    for operation in OPERATIONS:
        for route in operation.routes:
            app.route(
                route,
                method=[operation.verb],
                summary=operation.summary,
                description=operation.description,
                operation_id=operation.name,
                tags=list(operation.tags),
                responses={
                    200: {
                        "description": "OK",
                        "content": {"application/json": {"model": operation.response}},
                    },
                    **_error_responses(operation),
                },
            )(_endpoint(operation))
    return app


def _endpoint(operation: Operation) -> Any:
    def endpoint(request: Any) -> Any:
        raise NotImplementedError  # only described, never called

    endpoint.__annotations__ = {"request": Annotated[operation.request, Body()], "return": operation.response}
    return endpoint


def openapi_document() -> str:
    """The API description as JSON text, stable across runs (sorted keys, trailing newline)."""
    raw = _document_app().get_openapi_json_schema(
        title="Stripe Checkout (StripeV1CreateCheckout)",
        version="1.0.0",
        description=(
            "Creates Stripe Checkout Sessions for booking frontends. Errors carry the ServiceStack "
            "ResponseStatus body. Every call needs the x-api-key header (except CORS preflights)."
        ),
        servers=[Server(url="/", description="The API stage this document is served from")],
        security_schemes={"ApiKey": APIKey(name="x-api-key", **{"in": APIKeyIn.header})},
        security=[{"ApiKey": []}],
    )
    document = json.loads(raw)
    # Powertools documents a 422 for every validated route; this API answers validation
    # failures with 400 and the ResponseStatus body instead (see checkout.servicestack).
    for path in document["paths"].values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):  # referrers first
        if f'"#/components/schemas/{name}"' not in json.dumps(document):
            schemas.pop(name, None)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write docs/openapi.json, or with --check fail when it is not current."""
    parser = argparse.ArgumentParser(prog="openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/openapi.json is stale")
    args = parser.parse_args(argv)
    document = openapi_document()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text(encoding="utf-8") != document:
            sys.exit(f"{DOCUMENT} is stale: run ./dev openapi")
        return
    DOCUMENT.parent.mkdir(exist_ok=True)
    DOCUMENT.write_text(document, encoding="utf-8")
    print(f"wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
