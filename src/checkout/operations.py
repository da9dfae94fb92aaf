"""The service's operations, in one table: what each is called, what it takes and returns.

Everything that lists operations derives from `OPERATIONS`: the handler's custom and
predefined routes (`/api/{Operation}`, `/json/reply/{Operation}`), the DTOs served at
`/types/*`, the OpenAPI document, and the tests that keep template.yaml in step. Adding
an operation is one entry here (plus its rules in `checkout.contract.RULES`).

Routes that are no ServiceStack operation (webhooks, which take raw bodies) do not
belong here: they are plain routes of their handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from checkout.contract import (
    StripeCheckoutQueryResponse,
    StripeCheckoutStatusResponse,
    StripeV1CreateCheckout,
    StripeV1GetCheckoutStatus,
)

if TYPE_CHECKING:
    from checkout.composition import Services

# ServiceStack's predefined routes; `{operation}` is the request DTO's name, any case.
PREDEFINED_ROUTES = ("/api", "/json/reply")


@dataclass(frozen=True)
class Operation:
    """One ServiceStack operation: request DTO -> response DTO.

    `verb` is the verb of its custom routes and the one the generated DTOs send;
    `predefined_verbs` are the verbs the predefined routes accept for it (ServiceStack
    answers any other with 405). `handle` runs it against the service.
    """

    request: type[BaseModel]
    response: type[BaseModel]
    routes: tuple[str, ...]
    verb: str
    # (services, request, the caller's API key id) -> response; the key id is checked
    # against the company's bound keys (access.py).
    handle: Callable[[Services, Any, str | None], BaseModel]
    summary: str
    description: str = ""
    tags: tuple[str, ...] = ("Stripe",)
    predefined_verbs: tuple[str, ...] = ()
    # The statuses it answers besides 200, with what each means (the OpenAPI document's).
    errors: tuple[tuple[int, str], ...] = ()

    @property
    def name(self) -> str:
        """The operation name, the request DTO's class name, as ServiceStack names it."""
        return self.request.__name__

    @property
    def verbs(self) -> tuple[str, ...]:
        """The verbs the predefined routes accept for this operation."""
        return self.predefined_verbs or (self.verb,)


_UPSTREAM = (
    (502, "Stripe failed or refused"),
    (503, "Stripe or AWS throttled or unavailable"),
    (504, "Stripe or AWS timed out"),
)
_INVALID = (400, "Binding or validation failed; Errors lists every failing field")
_FORBIDDEN = (403, "The API key is not bound to the company (the same answer for an unknown company)")


def _create_checkout(
    services: Services, request: StripeV1CreateCheckout, api_key_id: str | None
) -> BaseModel:
    return services.checkout.create_checkout(request, api_key_id=api_key_id).to_response()


def _checkout_status(
    services: Services, request: StripeV1GetCheckoutStatus, api_key_id: str | None
) -> BaseModel:
    return services.status.status(request, api_key_id=api_key_id)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        request=StripeV1CreateCheckout,
        response=StripeCheckoutQueryResponse,
        routes=("/payment/stripe/v1/checkout",),
        verb="POST",
        handle=_create_checkout,
        summary="Create a Stripe Checkout Session for a payable entity",
        description=(
            "Expires the earlier open checkouts of the same InternalReferenceId, creates a new Stripe "
            "Checkout Session (hosted page or embedded) priced from the company's catalogue, and returns "
            "it. Also served at `/payment/stripe/v1/checkout.json`, `/api/StripeV1CreateCheckout` and "
            "`/json/reply/StripeV1CreateCheckout`; `?callback=NAME` answers as JSONP."
        ),
        errors=(
            _INVALID,
            _FORBIDDEN,
            (409, "The reference is paid, a payment for it is settling, or another checkout is in progress"),
            (429, "Too many new checkouts for this reference in the last minute (see Retry-After)"),
            *_UPSTREAM,
        ),
    ),
    Operation(
        request=StripeV1GetCheckoutStatus,
        response=StripeCheckoutStatusResponse,
        routes=("/payment/stripe/v1/checkout/status",),
        verb="POST",
        handle=_checkout_status,
        summary="The status of a checkout session this service created",
        description=(
            "Answers from the registry once a session is settled; asks Stripe while it is open or its "
            "payment is settling, and records what Stripe says, so asking repairs a lost webhook. A session "
            "this service did not create for the company is 404 NotFound. Also served at "
            "`/payment/stripe/v1/checkout/status.json`, `/api/StripeV1GetCheckoutStatus` and "
            "`/json/reply/StripeV1GetCheckoutStatus`."
        ),
        errors=(_INVALID, _FORBIDDEN, (404, "No checkout session with this id for the company"), *_UPSTREAM),
    ),
)

_BY_NAME = {operation.name.lower(): operation for operation in OPERATIONS}
_BY_ROUTE = {route.lower(): operation for operation in OPERATIONS for route in operation.routes}


def by_name(name: str) -> Operation | None:
    """The operation of a predefined route's name, matched case-insensitively as ServiceStack does."""
    return _BY_NAME.get(name.lower())


def by_route(path: str) -> Operation | None:
    """The operation whose custom route (or its `.json` form) the path is, any case."""
    path = path.lower()
    return _BY_ROUTE.get(path.removesuffix(".json"))


def canonical_path(path: str) -> str:
    """The path with its route spelled as registered, since ServiceStack matches any case.

    `/API/stripev1createcheckout` -> `/api/stripev1createcheckout` (the name is matched
    later), `/Payment/Stripe/V1/Checkout.JSON` -> `/payment/stripe/v1/checkout.json`.
    Other paths are returned unchanged.
    """
    lowered = path.lower()
    for prefix in PREDEFINED_ROUTES:
        if lowered.startswith(prefix + "/"):
            return prefix + path[len(prefix) :]
    operation = by_route(path)
    if operation is not None:
        route = next(r for r in operation.routes if lowered.removesuffix(".json") == r.lower())
        return route + (".json" if lowered.endswith(".json") else "")
    if lowered.startswith("/types/"):
        return lowered
    return path
