"""Lambda entry point for `POST /payment/stripe/v1/checkout` behind API Gateway (REST).

Thin by design: Powertools parses and validates the body into the contract's models,
`CheckoutService` does the work, and the handlers below map every outcome to the
contract's status and ServiceStack `ResponseStatus` body. The service is built at module
load, during Lambda's init phase, which runs with full CPU.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.types import EventHandlerInstance
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from checkout.composition import build_services
from checkout.config import Config
from checkout.contract import (
    ErrorResponse,
    StripeCheckoutQueryResponse,
    StripeCheckoutStatusResponse,
    StripeV1CreateCheckout,
    StripeV1GetCheckoutStatus,
    field_errors,
)
from checkout.errors import (
    CheckoutError,
    CheckoutNotConfigured,
    FieldError,
    InvalidRequest,
    UpstreamFailure,
    http_status,
)
from checkout.observability import count_rejection, logger, metrics

ROUTE = "/payment/stripe/v1/checkout"
STATUS_ROUTE = "/payment/stripe/v1/checkout/status"
ROUTES = (ROUTE, f"{ROUTE}.json", STATUS_ROUTE, f"{STATUS_ROUTE}.json")
# A plain JavaScript identifier path in ASCII (`cb`, `jQuery.cb_1`); anything else could
# inject script, or look like one name to us and another to the browser.
_JSONP_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*")
_MAX_CALLBACK_LENGTH = 128
# On every answer, errors, preflights and JSONP included: answers carry client secrets,
# so no cache may keep them and no browser may sniff them into another type; and the
# CORS headers depend on the Origin, so a cache must not serve one origin's to another.
_EVERY_ANSWER = {"Cache-Control": ["no-store"], "X-Content-Type-Options": ["nosniff"]}


def _cors(origins: tuple[str, ...]) -> CORSConfig | None:
    if not origins:
        return None
    return CORSConfig(allow_origin=origins[0], extra_origins=list(origins[1:]), max_age=600)


CONFIG = Config.from_env()
app = APIGatewayRestResolver(enable_validation=True, cors=_cors(CONFIG.cors_allowed_origins))
SERVICES = build_services(CONFIG)
SERVICE = SERVICES.checkout

_ERROR_RESPONSES: dict[int, Any] = {
    status: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for status, text in {
        400: "Validation failed; Errors lists every failing field",
        403: "The API key is not bound to the company (the same answer for an unknown company)",
        409: "The reference is paid, a payment for it is settling, or another checkout is in progress",
        429: "Too many new checkouts for this reference in the last minute (see Retry-After)",
        502: "Stripe failed or refused",
        503: "Stripe or AWS throttled or unavailable",
        504: "Stripe or AWS timed out",
    }.items()
}


def _caller_key(company_id: uuid.UUID) -> str | None:
    """The id of the API key API Gateway accepted (None: a bare `sam local invoke`); it and
    the company label the request's log lines, which the access log cannot."""
    api_key_id = app.current_event.request_context.identity.api_key_id
    logger.append_keys(company_id=str(company_id), api_key_id=api_key_id)
    return api_key_id


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=headers,
    )


def _error(
    status: int,
    error_code: str,
    message: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    count_rejection(error_code)
    # 5xx is ours or upstream's to fix, worth an on-call's eye; 4xx is the caller's.
    log = logger.warning if status >= 500 else logger.info
    log("Request rejected", extra={"status": status, "error_code": error_code})
    return _json(status, ErrorResponse.of(error_code, message, errors or []).to_wire(), headers)


def _query_errors(app: EventHandlerInstance, next_middleware: Any) -> Any:
    """Reject formats other than JSON and unsafe JSONP callbacks before any work is done."""
    params = app.current_event.query_string_parameters or {}
    errors: list[FieldError] = []
    fmt = params.get("format")
    if fmt is not None and fmt.lower() != "json":
        errors.append(
            FieldError("NotSupported", "format", "'format' must be json: this API speaks JSON only.")
        )
    callback = params.get("callback")
    if callback is not None and not is_jsonp_callback(callback):
        errors.append(
            FieldError(
                "InvalidCallback", "callback", "'callback' must be a plain JavaScript identifier path."
            )
        )
    if errors:
        raise InvalidRequest(errors)
    return next_middleware(app)


app.use(middlewares=[_query_errors])


@app.post(
    ROUTE,
    summary="Create a Stripe Checkout Session for a payable entity",
    description=(
        "Expires the earlier open checkouts of the same InternalReferenceId, creates a new Stripe Checkout "
        "Session (hosted page or embedded) priced from the company's catalogue, and returns it. Also served "
        "at `/payment/stripe/v1/checkout.json`; `?callback=NAME` answers as JSONP."
    ),
    operation_id="StripeV1CreateCheckout",
    tags=["Stripe"],
    responses={
        200: {
            "description": "The new checkout session",
            "content": {"application/json": {"model": StripeCheckoutQueryResponse}},
        },
        **_ERROR_RESPONSES,
    },
)
@app.post(ROUTES[1], include_in_schema=False)
def create_checkout(request: Annotated[StripeV1CreateCheckout, Body()]) -> Response[str]:
    """POST /payment/stripe/v1/checkout."""
    result = SERVICE.create_checkout(request, api_key_id=_caller_key(request.company_id))
    return _json(200, result.to_response().to_wire())


@app.post(
    STATUS_ROUTE,
    summary="The status of a checkout session this service created",
    description=(
        "Answers from the registry once a session is settled; asks Stripe while it is open or its payment is "
        "settling, and records what Stripe says. Also served at `/payment/stripe/v1/checkout/status.json`."
    ),
    operation_id="StripeV1GetCheckoutStatus",
    tags=["Stripe"],
    responses={
        200: {
            "description": "Where the checkout stands",
            "content": {"application/json": {"model": StripeCheckoutStatusResponse}},
        },
        404: {
            "description": "No such session for this company",
            "content": {"application/json": {"model": ErrorResponse}},
        },
        **{status: value for status, value in _ERROR_RESPONSES.items() if status not in {409, 429}},
    },
)
@app.post(f"{STATUS_ROUTE}.json", include_in_schema=False)
def checkout_status(request: Annotated[StripeV1GetCheckoutStatus, Body()]) -> Response[str]:
    """POST /payment/stripe/v1/checkout/status."""
    return _json(200, SERVICES.status.status(request, api_key_id=_caller_key(request.company_id)).to_wire())


@app.exception_handler(RequestValidationError)
def _invalid_body(exc: RequestValidationError) -> Response[str]:
    errors = field_errors(exc.errors())
    return _error(400, errors[0].error_code, errors[0].message, errors)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(exc: RequestUnsupportedContentType) -> Response[str]:
    return _error(
        400, "UnsupportedContentType", "The request body must be JSON (Content-Type: application/json)."
    )


@app.exception_handler(CheckoutError)
def _checkout_error(exc: CheckoutError) -> Response[str]:
    status = http_status(exc)
    if isinstance(exc, UpstreamFailure):
        metrics.add_metric(name="StripeFailure" if exc.from_stripe else "AwsFailure", unit="Count", value=1)
    errors = exc.errors if isinstance(exc, InvalidRequest) else []
    if isinstance(exc, CheckoutNotConfigured):
        errors = [FieldError(exc.error_code, "CompanyId", exc.message)]
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return _error(status, exc.error_code, exc.message, errors, headers)


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    if app.current_event.path in ROUTES:
        response = _error(
            405, "MethodNotAllowed", f"{app.current_event.http_method} is not allowed here; use POST."
        )
        response.headers["Allow"] = "POST, OPTIONS"
        return response
    return _error(404, "NotFound", f"No route for {app.current_event.http_method} {app.current_event.path}.")


@app.exception_handler(Exception)
def _bug(exc: Exception) -> Response[str]:
    # The stack trace goes to the log, next to the correlation id; never to the client.
    logger.exception("Unhandled error")
    return _error(500, "InternalError", "An unexpected error occurred; it has been logged.")


def is_jsonp_callback(name: str) -> bool:
    """True for a callback name that is safe to echo into JavaScript."""
    return len(name) <= _MAX_CALLBACK_LENGTH and _JSONP_CALLBACK.fullmatch(name) is not None


def _as_jsonp(event: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    callback = (event.get("queryStringParameters") or {}).get("callback")
    if callback is None or not is_jsonp_callback(callback):
        return response
    headers = response.get("multiValueHeaders") or {}
    if not any(v.startswith(content_types.APPLICATION_JSON) for v in headers.get("Content-Type", [])):
        return response
    # The /**/ prefix defuses the Rosetta-Flash style of content sniffing attack.
    response["body"] = f"/**/{callback}({response['body']});"
    headers["Content-Type"] = ["application/javascript; charset=utf-8"]
    return response


def _with_edge_headers(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("multiValueHeaders") or {}
    headers.update(_EVERY_ANSWER)
    vary = [v.strip() for value in headers.get("Vary", []) for v in value.split(",") if v.strip()]
    headers["Vary"] = [", ".join(dict.fromkeys([*vary, "Origin"]))]
    response["multiValueHeaders"] = headers
    return response


# clear_state: the company and key of one request must not label the next one's logs.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True
)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy integration entry point."""
    return _with_edge_headers(_as_jsonp(event, app.resolve(event, context)))
