"""Lambda entry point of the checkout API behind API Gateway (REST).

Thin by design. Every operation of `checkout.operations.OPERATIONS` is served at its
custom routes and at ServiceStack's predefined routes (`/api/{Operation}`,
`/json/reply/{Operation}`); `checkout.servicestack` binds and validates the request as
the original ServiceStack host does, the service does the work, and the handlers below
map every outcome to the contract's status and ServiceStack `ResponseStatus` body.
`/types/*` serve the DTOs for ServiceStack's clients. The service is built at module
load, during Lambda's init phase, which runs with full CPU.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from checkout import native_types
from checkout.composition import build_services
from checkout.config import Config
from checkout.contract import to_request
from checkout.errors import (
    CheckoutError,
    CheckoutNotConfigured,
    InvalidRequest,
    UpstreamFailure,
    http_status,
)
from checkout.observability import count_rejection, logger, metrics
from checkout.operations import OPERATIONS, PREDEFINED_ROUTES, Operation, by_name, by_route, canonical_path
from checkout.servicestack import (
    SERIALIZATION_EXCEPTION,
    BindingFailed,
    Failure,
    Origin,
    TextCase,
    ValidationFailed,
    error_body,
    read_request,
    render,
    text_case,
)

# The verbs a predefined route takes; an operation answers 405 to the ones it does not serve.
ANY_VERB = ["GET", "POST", "PUT", "DELETE", "PATCH"]
# On every answer, errors, preflights and JSONP included: answers carry client secrets,
# so no cache may keep them and no browser may sniff them into another type; and the
# CORS headers depend on the Origin, so a cache must not serve one origin's to another.
_EVERY_ANSWER = {"Cache-Control": ["no-store"], "X-Content-Type-Options": ["nosniff"]}


def _cors(origins: tuple[str, ...]) -> CORSConfig | None:
    if not origins:
        return None
    return CORSConfig(allow_origin=origins[0], extra_origins=list(origins[1:]), max_age=600)


CONFIG = Config.from_env()
app = APIGatewayRestResolver(cors=_cors(CONFIG.cors_allowed_origins))
SERVICES = build_services(CONFIG)


# -- answers ------------------------------------------------------------------------------------


def _query() -> dict[str, str]:
    return app.current_event.query_string_parameters or {}


def _answer(status: int, body: Any, origin: Origin = Origin.SERVICE) -> Response[str]:
    answer = render(status, body, _query(), origin)
    return Response(status_code=answer.status, content_type=answer.content_type, body=answer.body)


def _error(
    status: int,
    error_code: str,
    message: str,
    errors: list[Failure] | None = None,
    origin: Origin = Origin.SERVICE,
) -> Response[str]:
    count_rejection(error_code)
    # 5xx is ours or upstream's to fix, worth an on-call's eye; 4xx is the caller's.
    log = logger.warning if status >= 500 else logger.info
    log("Request rejected", extra={"status": status, "error_code": error_code})
    return _answer(status, error_body(error_code, message, errors or []), origin)


# -- operations ---------------------------------------------------------------------------------


def _run(operation: Operation) -> Response[str]:
    """Bind, validate and run one operation, as ServiceStack runs a request through its pipeline."""
    event = app.current_event
    multi = event.multi_value_query_string_parameters or {}
    values = read_request(
        operation.request,
        method=event.http_method,
        body=event.decoded_body,
        content_type=event.headers.get("Content-Type"),
        query=[(key, value) for key, values in multi.items() for value in values],
        snake=text_case(_query().get("jsconfig")) is TextCase.SNAKE,
    )
    request = to_request(operation.request, values)
    if event.http_method not in operation.verbs:
        # ServiceStack looks for the service method only after validation.
        name = operation.name
        return _error(
            405,
            "NotImplementedException",
            f"Could not find method named {event.http_method.capitalize()}({name}) or Any({name}) "
            "on Service CheckoutService",
        )
    result = operation.handle(SERVICES, request, _caller_key(request))
    return _answer(200, result.model_dump(mode="json", by_alias=True, exclude_none=True))


def _caller_key(request: Any) -> str | None:
    """The id of the API key API Gateway accepted (None: a bare `sam local invoke`); it and
    the company label the request's log lines, which the access log cannot."""
    api_key_id = app.current_event.request_context.identity.api_key_id
    logger.append_keys(company_id=str(getattr(request, "company_id", "")), api_key_id=api_key_id)
    return api_key_id


def _custom_route(operation: Operation) -> Any:
    def serve() -> Response[str]:
        return _run(operation)

    return serve


for _operation in OPERATIONS:
    for _route in _operation.routes:
        app.route(f"{_route}.json", method=[_operation.verb])(_custom_route(_operation))
        app.route(_route, method=[_operation.verb])(_custom_route(_operation))


@app.route(f"{PREDEFINED_ROUTES[0]}/<name>", method=ANY_VERB)
@app.route(f"{PREDEFINED_ROUTES[1]}/<name>", method=ANY_VERB)
def predefined_route(name: str) -> Response[str]:
    """`/api/{Operation}` and `/json/reply/{Operation}`: ServiceStack's predefined routes."""
    operation = by_name(name.removesuffix(".json"))
    if operation is None:
        return _error(
            405,
            "NotImplementedException",
            "The operation does not exist for this service",
            origin=Origin.HOST,
        )
    return _run(operation)


# -- Add ServiceStack Reference -----------------------------------------------------------------


def _base_url() -> str:
    """The URL the caller reached this API at, stage path included, as the DTO headers name it."""
    event = app.current_event
    scheme = event.headers.get("X-Forwarded-Proto") or "https"
    host = event.headers.get("Host") or "localhost"
    full_path = event.request_context.path or event.path
    # The path was re-spelled by canonical_path, so compare without case.
    prefix = (
        full_path[: len(full_path) - len(event.path)]
        if full_path.lower().endswith(event.path.lower())
        else ""
    )
    return f"{scheme}://{host}{prefix}"


@app.get("/types/typescript")
def typescript_dtos() -> Response[str]:
    """TypeScript DTOs for `npx get-dtos typescript` / `x typescript`."""
    return Response(200, "text/plain; charset=utf-8", native_types.typescript(_base_url()))


@app.get("/types/python")
def python_dtos() -> Response[str]:
    """Python DTOs for `x python` and the `servicestack` PyPI client."""
    return Response(200, "text/plain; charset=utf-8", native_types.python(_base_url()))


@app.get("/types/metadata")
def metadata_types() -> Response[str]:
    """ServiceStack's MetadataTypes JSON, which the DTO tools read."""
    return Response(
        200,
        "application/json; charset=utf-8",
        json.dumps(native_types.metadata(_base_url()), separators=(",", ":")),
    )


# -- outcomes -> status and ResponseStatus -----------------------------------------------------


@app.exception_handler(BindingFailed)
def _unbindable(exc: BindingFailed) -> Response[str]:
    return _error(400, SERIALIZATION_EXCEPTION, exc.message, exc.errors, origin=Origin.HOST)


@app.exception_handler(ValidationFailed)
def _invalid(exc: ValidationFailed) -> Response[str]:
    first = exc.failures[0]
    return _error(400, first.error_code, first.message, exc.failures, origin=Origin.VALIDATION)


@app.exception_handler(InvalidRequest)
def _invalid_request(exc: InvalidRequest) -> Response[str]:
    errors = [Failure(e.error_code, e.field_name, e.message) for e in exc.errors]
    return _error(400, exc.error_code, exc.message, errors)


@app.exception_handler(CheckoutError)
def _checkout_error(exc: CheckoutError) -> Response[str]:
    if isinstance(exc, UpstreamFailure):
        metrics.add_metric(name="StripeFailure" if exc.from_stripe else "AwsFailure", unit="Count", value=1)
    errors = (
        [Failure(exc.error_code, "CompanyId", exc.message)] if isinstance(exc, CheckoutNotConfigured) else []
    )
    response = _error(http_status(exc), exc.error_code, exc.message, errors)
    if exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@app.not_found
def _no_route(exc: NotFoundError) -> Response[str]:
    method, path = app.current_event.http_method, app.current_event.path
    operation = by_route(path)
    if operation is not None:
        response = _error(
            405,
            "MethodNotAllowed",
            f"{method} is not allowed here; use {operation.verb}.",
            origin=Origin.HOST,
        )
        response.headers["Allow"] = f"{operation.verb}, OPTIONS"
        return response
    return _error(404, "NotFound", f"No route for {method} {path}.", origin=Origin.HOST)


@app.exception_handler(Exception)
def _bug(exc: Exception) -> Response[str]:
    # The stack trace goes to the log, next to the correlation id; never to the client.
    logger.exception("Unhandled error")
    return _error(500, "InternalError", "An unexpected error occurred; it has been logged.")


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
    # ServiceStack matches routes in any case; Powertools matches them as registered.
    event["path"] = canonical_path(event.get("path") or "/")
    return _with_edge_headers(app.resolve(event, context))
