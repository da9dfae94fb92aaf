"""Lambda entry point for Stripe's webhook deliveries behind API Gateway (REST).

`POST /payment/stripe/v1/webhook/{CompanyId}` and `POST /payment/stripe/v1/webhook/connect`
carry no API key (Stripe cannot send one): the signature over the raw body is their
authentication, checked by `checkout.stripe_webhooks`. Thin by design: it takes the raw
bytes (decoding API Gateway's base64 when `isBase64Encoded`), hands them over, and maps
the outcome: 200 for anything verified (also events it ignores), 400 with the
ServiceStack error body for anything not verifiably from Stripe, 5xx for a transient
failure so that Stripe delivers again.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from checkout.composition import build_webhook_service
from checkout.config import Config
from checkout.errors import CheckoutError, http_status
from checkout.observability import count_rejection, logger, metrics
from checkout.servicestack import error_body
from checkout.stripe_webhooks import CONNECT, InvalidWebhook

ROUTE_PREFIX = "/payment/stripe/v1/webhook/"
SERVICE = build_webhook_service(Config.from_env())
_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(_HEADERS), "body": json.dumps(body, separators=(",", ":"))}


def _error(exc: CheckoutError) -> dict[str, Any]:
    status = http_status(exc)
    count_rejection(exc.error_code)
    (logger.warning if status >= 500 else logger.info)(
        "Webhook delivery rejected", extra={"status": status, "error_code": exc.error_code}
    )
    return _answer(status, error_body(exc.error_code, exc.message))


def _scope(path: str) -> str | None:
    """`connect`, or the company id in canonical form; None for anything else."""
    tail = path[len(ROUTE_PREFIX) :] if path.startswith(ROUTE_PREFIX) else ""
    if tail == CONNECT:
        return CONNECT
    try:
        return str(uuid.UUID(tail))
    except ValueError:
        return None


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidWebhook("The body is not valid base64.") from None
    return str(body).encode("utf-8", errors="surrogatepass")


def _signature(event: dict[str, Any]) -> str | None:
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "stripe-signature":
            return str(value)
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy integration entry point."""
    if event.get("httpMethod") != "POST":
        return _answer(405, error_body("MethodNotAllowed", "Stripe delivers webhooks with POST."))
    scope = _scope(str(event.get("path") or ""))
    if scope is None:
        return _answer(404, error_body("NotFound", "No such webhook endpoint."))
    try:
        outcome = SERVICE.receive(scope, _raw_body(event), _signature(event))
    except CheckoutError as exc:
        return _error(exc)
    except Exception:
        # A 500 makes Stripe deliver again; the trace is in the log, never in the answer.
        logger.exception("Unhandled error")
        count_rejection("InternalError")
        return _answer(500, error_body("InternalError", "An unexpected error occurred; it has been logged."))
    logger.info("Webhook delivery handled", extra={"outcome": outcome.value})
    return _answer(200, {"Received": True, "Outcome": outcome.value})
