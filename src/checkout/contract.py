"""The wire contract of `POST /payment/stripe/v1/checkout` (StripeV1CreateCheckout).

Property names are PascalCase as the published ServiceStack operation has them, bound
case-insensitively with unknown properties ignored, as ServiceStack binds them. These
models are the single source of the OpenAPI document. Validation failures carry their
own ErrorCode and message so that `field_errors` can turn them into the ServiceStack
`ResponseStatus` body that existing clients display.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_pascal
from pydantic_core import PydanticCustomError

from checkout.errors import FieldError
from checkout.locales import COUNTRY_CODES

MAX_ARTICLES = 100  # Stripe's line-item limit per Checkout Session.
MAX_QUANTITY = 999
MAX_REFERENCE_LENGTH = 200  # Stripe's limit for client_reference_id.
MAX_URL_LENGTH = 2048
# The OpenAPI examples form a request that succeeds against `./dev run`'s demo company as
# it stands, so Swagger UI's "Try it out" works without editing.
EXAMPLE_COMPANY_ID = "6f2b0d4e-5c1a-4a8e-9a51-2f3c8d9e7b10"
EXAMPLE_SITE = "https://booking.example.com"


class UiMode(StrEnum):
    """The contract's UI modes; the Stripe gateway maps them to Stripe's current names."""

    HOSTED = "hosted"
    EMBEDDED = "embedded"


class _WireModel(BaseModel):
    """PascalCase on the wire, snake_case in Python, ServiceStack's lenient binding."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
        frozen=True,
        field_title_generator=lambda name, info: to_pascal(name),
    )

    @model_validator(mode="before")
    @classmethod
    def _bind_case_insensitively(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        aliases: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            aliases[alias.lower()] = aliases[name] = alias  # the Python name too, for our own code
        bound: dict[str, Any] = {}
        for key, value in data.items():
            target = aliases.get(str(key).lower())
            if target is not None and target not in bound:
                bound[target] = value
        return bound


def _fail(code: str, tail: str) -> PydanticCustomError:
    # The message is the tail after the field name: field_errors() prefixes the field as
    # the client knows it, which a validator cannot know for items of a list.
    return PydanticCustomError(code, tail)


def _parse_guid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = uuid.UUID(value.strip())
        except ValueError:
            raise _fail("InvalidGuid", "is not a valid GUID") from None
    elif value is None or value == "":
        raise _fail("NotEmpty", "must not be empty")
    else:
        raise _fail("InvalidGuid", "is not a valid GUID")
    if parsed.int == 0:
        raise _fail("NotEmpty", "must not be empty")
    return parsed


def _country_code(value: str) -> str:
    code = value.strip().upper()
    if not code:
        raise _fail("NotEmpty", "must not be empty")
    if code not in COUNTRY_CODES:
        raise _fail("CountryCode", "must be an ISO 3166-1 alpha-2 country code, such as SE")
    return code


def _greater_than_zero(value: int) -> int:
    if value <= 0:
        raise _fail("GreaterThan", "must be greater than '0'")
    return value


def _quantity(value: int) -> int:
    if not 1 <= value <= MAX_QUANTITY:
        raise _fail("InclusiveBetween", f"must be between 1 and {MAX_QUANTITY}")
    return value


def _reference(value: str) -> str:
    if not value.strip():
        raise _fail("NotEmpty", "must not be empty")
    if len(value) > MAX_REFERENCE_LENGTH:
        raise _fail("MaximumLength", f"must be {MAX_REFERENCE_LENGTH} characters or fewer")
    return value


def _blank_as_none(value: Any) -> Any:
    # ServiceStack clients send "" for strings they do not set.
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _url_length(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_URL_LENGTH:
        raise _fail("MaximumLength", f"must be {MAX_URL_LENGTH} characters or fewer")
    return value


def _ui_mode(value: Any) -> Any:
    value = _blank_as_none(value)
    if value is None:
        return UiMode.HOSTED
    if isinstance(value, str):
        try:
            return UiMode(value.strip().lower())
        except ValueError:
            pass
    raise _fail("UiMode", "must be one of: hosted, embedded")


class ArticleToCreate(_WireModel):
    """One article to pay for; its price comes from the company's catalogue, never from here."""

    article_id: Annotated[int, AfterValidator(_greater_than_zero)] = Field(examples=[42])
    article_type_id: Annotated[int, AfterValidator(_greater_than_zero)] = Field(
        description="What kind of thing is sold: service, punch ticket, gift card, ...", examples=[1]
    )
    quantity: Annotated[int, AfterValidator(_quantity)] = Field(
        default=1, description="1 when omitted.", examples=[1]
    )


def _articles(value: list[ArticleToCreate]) -> list[ArticleToCreate]:
    if not value:
        raise _fail("NotEmpty", "must not be empty")
    if len(value) > MAX_ARTICLES:
        raise _fail("MaximumLength", f"must not contain more than {MAX_ARTICLES} items")
    return value


OptionalUrl = Annotated[str | None, BeforeValidator(_blank_as_none), AfterValidator(_url_length)]


class StripeV1CreateCheckout(_WireModel):
    """Create a Stripe Checkout Session for a payable entity; earlier open sessions of the
    same reference are expired."""

    company_id: Annotated[uuid.UUID, BeforeValidator(_parse_guid)] = Field(
        description="The company id.", examples=[EXAMPLE_COMPANY_ID]
    )
    country_code: Annotated[str, AfterValidator(_country_code)] = Field(
        description="ISO 3166-1 alpha-2; selects the language of the checkout page.", examples=["SE"]
    )
    articles: Annotated[list[ArticleToCreate], AfterValidator(_articles)] = Field(
        description=f"1 to {MAX_ARTICLES} articles from the company's catalogue.",
        examples=[[{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}]],
    )
    internal_reference_id: Annotated[str, AfterValidator(_reference)] = Field(
        description="Your reference (booking id, rebate code id, ...); one paid checkout per reference.",
        examples=["booking-123"],
    )
    confirmation_url: OptionalUrl = Field(
        default=None,
        description="Where the payer lands after paying; defaults to the company's confirmation URL.",
        examples=[f"{EXAMPLE_SITE}/booking/123/paid?session_id={{CHECKOUT_SESSION_ID}}"],
    )
    cancel_url: OptionalUrl = Field(
        default=None,
        description="Hosted mode only: where the payer goes on cancel (a back button).",
        examples=[f"{EXAMPLE_SITE}/booking/123"],
    )
    ui_mode: Annotated[UiMode, BeforeValidator(_ui_mode)] = Field(
        default=UiMode.HOSTED,
        description="hosted (default) or embedded, case-insensitive.",
        examples=["hosted"],
    )


class StripeCheckoutQueryResponse(_WireModel):
    """The created session; properties without a value are omitted."""

    session_id: str | None = Field(default=None, description="The checkout session id.")
    url: str | None = Field(default=None, description="Hosted mode: the Stripe Checkout page.")
    status: str | None = Field(default=None, description="The checkout status (open for a new session).")
    client_secret: str | None = Field(
        default=None, description="Embedded mode: for Stripe.js initEmbeddedCheckout."
    )
    customer_id: str | None = None
    payment_intent_client_secret: str | None = None
    payment_intent_id: str | None = Field(
        default=None,
        description="Absent at creation: Stripe creates the PaymentIntent when the payer confirms.",
    )
    stripe_account: str | None = Field(
        default=None, description="The connected account the session lives on (Stripe Connect)."
    )

    def to_wire(self) -> dict[str, str]:
        """The JSON object as ServiceStack sends it: PascalCase, nulls omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _session_id(value: str) -> str:
    value = value.strip()
    if not value:
        raise _fail("NotEmpty", "must not be empty")
    if len(value) > 255 or not value.isascii() or not value.startswith("cs_"):
        raise _fail("InvalidSessionId", "must be a Checkout Session id (cs_...)")
    return value


class StripeV1GetCheckoutStatus(_WireModel):
    """The state of a Checkout Session this service created for the company."""

    company_id: Annotated[uuid.UUID, BeforeValidator(_parse_guid)] = Field(
        description="The company id.", examples=[EXAMPLE_COMPANY_ID]
    )
    session_id: Annotated[str, AfterValidator(_session_id)] = Field(
        description="The SessionId a checkout answered with (cs_...).", examples=["cs_test_a1B2c3D4e5F6"]
    )


class StripeCheckoutStatusResponse(_WireModel):
    """Where a checkout stands; properties without a value are omitted."""

    status: str | None = Field(default=None, description="open, complete or expired.")
    payment_status: str | None = Field(default=None, description="paid, unpaid or no_payment_required.")
    customer_email: str | None = Field(default=None, description="The payer's email, as Stripe collected it.")
    internal_reference_id: str | None = Field(default=None, description="The reference the checkout was for.")

    def to_wire(self) -> dict[str, str]:
        """The JSON object as ServiceStack sends it: PascalCase, nulls omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ResponseError(_WireModel):
    """One failing field."""

    error_code: str
    field_name: str | None = None
    message: str


class ResponseStatus(_WireModel):
    """ServiceStack's error status; ErrorCode and Message repeat the first error."""

    error_code: str
    message: str
    errors: list[ResponseError] = Field(default_factory=list)


class ErrorResponse(_WireModel):
    """Body of every non-2xx response."""

    response_status: ResponseStatus

    @classmethod
    def of(cls, error_code: str, message: str, errors: Sequence[FieldError] = ()) -> ErrorResponse:
        """Build the body from the first error's code and message and the field list."""
        return cls(
            response_status=ResponseStatus(
                error_code=error_code,
                message=message,
                errors=[
                    ResponseError(error_code=e.error_code, field_name=e.field_name or None, message=e.message)
                    for e in errors
                ],
            )
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object, PascalCase, nulls omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Pydantic's own error types, for type and shape errors no validator above sees.
_BUILTIN_ERRORS: dict[str, tuple[str, str]] = {
    "missing": ("NotEmpty", "must not be empty"),
    "int_type": ("InvalidType", "must be a whole number"),
    "int_parsing": ("InvalidType", "must be a whole number"),
    "int_from_float": ("InvalidType", "must be a whole number"),
    "string_type": ("InvalidType", "must be a string"),
    "list_type": ("InvalidType", "must be a list"),
    "model_type": ("InvalidType", "must be an object"),
    "model_attributes_type": ("InvalidType", "must be an object"),
    "dict_type": ("InvalidType", "must be an object"),
}
_NULL_IS_EMPTY = {"int_type", "string_type", "list_type", "model_type", "model_attributes_type", "dict_type"}


def field_name(loc: Iterable[str | int]) -> str:
    """`("body", "Articles", 0, "Quantity")` -> `Articles[0].Quantity`."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part != "body":
            name = f"{name}.{part}" if name else part
    return name


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Turn pydantic's (or Powertools') validation errors into the contract's field errors."""
    result: list[FieldError] = []
    for error in errors:
        kind = str(error.get("type", ""))
        name = field_name(error.get("loc", ()))
        if kind == "json_invalid":
            result.append(FieldError("InvalidJson", "", "The request body is not valid JSON."))
            continue
        if not name:
            result.append(FieldError("InvalidBody", "", "The request body must be a JSON object."))
            continue
        if kind in _NULL_IS_EMPTY and error.get("input") is None:
            code, tail = _BUILTIN_ERRORS["missing"]
        elif kind in _BUILTIN_ERRORS:
            code, tail = _BUILTIN_ERRORS[kind]
        elif kind[:1].isupper():  # raised by a validator of this module
            code, tail = kind, str(error.get("msg", "is not valid"))
        else:
            code, tail = "InvalidValue", "is not valid"
        result.append(FieldError(code, name, f"'{name}' {tail}."))
    return result
