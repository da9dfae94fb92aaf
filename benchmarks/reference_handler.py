"""A straightforward checkout handler: the yardstick `./dev bench` measures the service against.

What a competent engineer writes in an afternoon with Powertools, boto3 and stripe-python,
making the same calls as the service without its invariant: no lease, no pending
attempt, no transaction. Two concurrent requests for one reference can both leave a
session open, and a crash between Stripe and DynamoDB loses a session. It reads and
writes the service's tables in the key layout `src/checkout/dynamodb_layout.py`
documents (spelled out here, not imported), answers in the same shape, and is never
deployed (the template's CodeUri is `src/`).

Per request: the settings item, the articles (BatchGetItem), the Stripe key (Secrets
Manager through Powertools parameters, cached as Powertools does by default), the
reference's earlier sessions (Query), an expiry and a status update per open one, in
sequence, the new session, and PutItem of its record and of the current pointer.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from typing import Annotated, Any, Literal

import boto3
import stripe
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.conditions import Key
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

logger = Logger()
app = APIGatewayRestResolver(enable_validation=True)
dynamodb = boto3.resource("dynamodb")
companies = dynamodb.Table(os.environ.get("COMPANIES_TABLE_NAME", "checkout-companies"))
sessions = dynamodb.Table(os.environ.get("SESSIONS_TABLE_NAME", "checkout-sessions"))


class Article(BaseModel):
    """One article to pay for."""

    model_config = ConfigDict(alias_generator=to_pascal)

    article_id: int = Field(gt=0)
    article_type_id: int = Field(gt=0)
    quantity: int = Field(default=1, ge=1)


class CheckoutRequest(BaseModel):
    """The request body (PascalCase on the wire)."""

    model_config = ConfigDict(alias_generator=to_pascal)

    company_id: uuid.UUID
    country_code: str = Field(min_length=2, max_length=2)
    articles: list[Article] = Field(min_length=1, max_length=100)
    internal_reference_id: str = Field(min_length=1, max_length=200)
    confirmation_url: str | None = None
    cancel_url: str | None = None
    ui_mode: Literal["hosted", "embedded"] = "hosted"


class CheckoutRejected(Exception):
    """A request the company's settings or catalogue do not allow: 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@functools.cache
def stripe_client(api_key: str) -> stripe.StripeClient:
    """One client per key, kept for the warm container."""
    base = os.environ.get("STRIPE_API_BASE")
    return stripe.StripeClient(api_key, base_addresses={"api": base} if base else {})


def line_items(company_pk: str, articles: list[Article]) -> list[dict[str, Any]]:
    """Stripe line items priced from the catalogue."""
    keys = [{"pk": company_pk, "sk": f"ARTICLE#{a.article_type_id}#{a.article_id}"} for a in articles]
    found = dynamodb.batch_get_item(RequestItems={companies.name: {"Keys": keys}})
    catalogue = {item["sk"]: item for item in found["Responses"][companies.name]}
    items = []
    for article, key in zip(articles, keys, strict=True):
        item = catalogue.get(key["sk"])
        if item is None or not item.get("active", True):
            raise CheckoutRejected("NotFound", f"Article {article.article_id} is not in the catalogue.")
        price = {"currency": item["currency"], "unit_amount": int(str(item["unit_amount"])),
                 "product_data": {"name": item["name"]}}  # fmt: skip
        items.append({"quantity": article.quantity, "price_data": price})
    return items


@app.post("/payment/stripe/v1/checkout")
def create_checkout(request: Annotated[CheckoutRequest, Body()]) -> dict[str, Any]:
    """Expire the reference's open sessions, create a new one and record it."""
    company_pk = f"COMPANY#{request.company_id}"
    settings = companies.get_item(Key={"pk": company_pk, "sk": "SETTINGS"}).get("Item")
    if settings is None or not settings.get("checkout_enabled", True):
        raise CheckoutRejected("CheckoutNotConfigured", "Checkout is not configured for the company.")
    confirmation = request.confirmation_url or settings.get("default_confirmation_url")
    cancel = request.cancel_url or settings.get("default_cancel_url")
    allowed = [str(prefix) for prefix in settings.get("allowed_url_prefixes", [])]  # type: ignore[union-attr]
    for url in (request.confirmation_url, request.cancel_url):
        if url is not None and not url.startswith(tuple(allowed)):
            raise CheckoutRejected("UrlNotAllowed", f"{url} is not allowed for the company.")
    metadata = {"CompanyId": str(request.company_id), "InternalReferenceId": request.internal_reference_id}
    params: Any = {
        "mode": "payment",
        "ui_mode": f"{request.ui_mode}_page",
        "line_items": line_items(company_pk, request.articles),
        "client_reference_id": request.internal_reference_id,
        "locale": "auto",
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
    }
    if request.ui_mode == "embedded":
        params["return_url"] = confirmation
    else:
        params |= {"success_url": confirmation} | ({"cancel_url": cancel} if cancel else {})

    client = stripe_client(str(parameters.get_secret(str(settings["stripe_secret_name"]))))
    account = settings.get("stripe_account")
    options: Any = {"stripe_account": account} if account else {}
    reference_pk = f"REFERENCE#{request.company_id}#{request.internal_reference_id}"
    earlier = sessions.query(
        KeyConditionExpression=Key("pk").eq(reference_pk) & Key("sk").begins_with("SESSION#"),
        ConsistentRead=True,
    )["Items"]
    for record in earlier:
        if record["status"] == "open":
            client.v1.checkout.sessions.expire(str(record["session_id"]), options=options)
            sessions.update_item(
                Key={"pk": reference_pk, "sk": record["sk"]},
                UpdateExpression="SET #status = :expired",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":expired": "expired"},
            )

    session = client.v1.checkout.sessions.create(params=params, options=options)
    now = time.time()
    sessions.put_item(
        Item={
            "pk": reference_pk,
            "sk": f"SESSION#{session.id}",
            "session_id": session.id,
            "company_id": str(request.company_id),
            "reference": request.internal_reference_id,
            "status": session.status or "open",
            "ui_mode": request.ui_mode,
            "amount_total": session.amount_total or 0,
            "currency": session.currency or "",
            "created_at_ms": int(now * 1000),
            "updated_at": int(now),
        }
    )
    sessions.put_item(
        Item={
            "pk": reference_pk,
            "sk": "HEAD",
            "company_id": str(request.company_id),
            "reference": request.internal_reference_id,
            "current_session_id": session.id,
            "updated_at": int(now),
        }
    )
    logger.info("Checkout session created", extra={"session_id": session.id})
    answer = {"SessionId": session.id, "Url": session.url, "Status": session.status,
              "ClientSecret": session.client_secret, "StripeAccount": account}  # fmt: skip
    return {name: value for name, value in answer.items() if value is not None}


def _error(status: int, code: str, message: str) -> Response[dict[str, Any]]:
    body = {"ResponseStatus": {"ErrorCode": code, "Message": message}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(CheckoutRejected)
def _rejected(exc: CheckoutRejected) -> Response[dict[str, Any]]:
    return _error(400, exc.code, str(exc))


@app.exception_handler(stripe.StripeError)
def _stripe_failed(exc: stripe.StripeError) -> Response[dict[str, Any]]:
    logger.warning("Stripe call failed", extra={"stripe_request_id": exc.request_id})
    return _error(502, "StripeError", "Stripe failed to process the request.")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy integration entry point."""
    return app.resolve(event, context)
