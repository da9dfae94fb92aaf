"""The wire contract of the checkout operations (StripeV1CreateCheckout, ...).

Property names are PascalCase as the published ServiceStack operation has them. A
request is bound and validated the way the original ServiceStack host does it
(`checkout.servicestack`): the bound values are checked against `RULES`, this module's
FluentValidation rules, whose failures carry FluentValidation's codes and texts; only a
request that passes them becomes one of the models below. The models are also the
single source of the OpenAPI document and of the DTOs served at `/types/*`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from checkout.locales import COUNTRY_CODES
from checkout.servicestack import (
    CSharp,
    Failure,
    GreaterThan,
    InclusiveBetween,
    MaximumLength,
    Meta,
    Must,
    NotEmpty,
    Rule,
    ValidationFailed,
    each,
    rule,
    split_pascal_case,
    validate,
)

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


def _country_code(value: str) -> str:
    return value.strip().upper()


def _blank_as_none(value: Any) -> Any:
    # ServiceStack clients send "" for strings they do not set.
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _ui_mode(value: Any) -> Any:
    value = _blank_as_none(value)
    if value is None:
        return UiMode.HOSTED
    return UiMode(str(value).strip().lower())


class ArticleToCreate(_WireModel):
    """One article to pay for; its price comes from the company's catalogue, never from here."""

    article_id: int = Field(default=0, examples=[42])
    article_type_id: int = Field(
        default=0,
        description="What kind of thing is sold: service, punch ticket, gift card, ...",
        examples=[1],
    )
    quantity: int = Field(default=1, description="1 when omitted.", examples=[1])


OptionalUrl = Annotated[str | None, BeforeValidator(_blank_as_none)]


class StripeV1CreateCheckout(_WireModel):
    """Create a Stripe Checkout Session for a payable entity; earlier open sessions of the
    same reference are expired."""

    company_id: Annotated[uuid.UUID, CSharp(nullable=True)] = Field(
        description="The company id.", examples=[EXAMPLE_COMPANY_ID]
    )
    country_code: Annotated[str, AfterValidator(_country_code)] = Field(
        description="ISO 3166-1 alpha-2; selects the language of the checkout page.", examples=["SE"]
    )
    articles: list[ArticleToCreate] = Field(
        description=f"1 to {MAX_ARTICLES} articles from the company's catalogue.",
        examples=[[{"ArticleId": 42, "ArticleTypeId": 1, "Quantity": 1}]],
    )
    internal_reference_id: str = Field(
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


class StripeV1GetCheckoutStatus(_WireModel):
    """The state of a Checkout Session this service created for the company."""

    company_id: Annotated[uuid.UUID, CSharp(nullable=True)] = Field(
        description="The company id.", examples=[EXAMPLE_COMPANY_ID]
    )
    session_id: str = Field(description="The SessionId a checkout answered with (cs_...).")


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
    meta: dict[str, str] | None = Field(
        default=None, description="The rule's placeholder values: PropertyName, PropertyValue, ..."
    )


class ResponseStatus(_WireModel):
    """ServiceStack's error status; ErrorCode and Message repeat the first error."""

    error_code: str
    message: str
    errors: list[ResponseError] = Field(default_factory=list)


class ErrorResponse(_WireModel):
    """Body of every non-2xx response."""

    response_status: ResponseStatus


# -- validation: the FluentValidation rules of each request DTO -----------------------------


def _is_country_code(value: str | None) -> bool:
    return value is None or not value.strip() or value.strip().upper() in COUNTRY_CODES


def _is_ui_mode(value: str | None) -> bool:
    return value is None or not value.strip() or value.strip().lower() in {m.value for m in UiMode}


def _at_most_articles(value: list[Any] | None) -> bool:
    return value is None or len(value) <= MAX_ARTICLES


def _is_session_id(value: str | None) -> bool:
    return value is None or (value.startswith("cs_") and value.isascii() and len(value) <= 255)


RULES: dict[type[BaseModel], tuple[Rule, ...]] = {
    StripeV1CreateCheckout: (
        rule("CompanyId", NotEmpty()),
        rule("CountryCode", NotEmpty(), Must(_is_country_code)),
        rule("Articles", NotEmpty(), Must(_at_most_articles)),
        each("Articles", ArticleToCreate),
        rule("InternalReferenceId", NotEmpty(), MaximumLength(MAX_REFERENCE_LENGTH)),
        rule("ConfirmationUrl", MaximumLength(MAX_URL_LENGTH)),
        rule("CancelUrl", MaximumLength(MAX_URL_LENGTH)),
        rule("UiMode", Must(_is_ui_mode)),
    ),
    StripeV1GetCheckoutStatus: (
        rule("CompanyId", NotEmpty()),
        rule("SessionId", NotEmpty(), Must(_is_session_id)),
    ),
    ArticleToCreate: (
        rule("ArticleId", GreaterThan(0)),
        rule("ArticleTypeId", GreaterThan(0)),
        rule("Quantity", InclusiveBetween(1, MAX_QUANTITY)),
    ),
}


def rules_for(model: type[BaseModel]) -> Sequence[Rule]:
    """The model's validation rules; a model without rules has none."""
    return RULES.get(model, ())


def to_request[M: BaseModel](model: type[M], values: Mapping[str, Any]) -> M:
    """The request DTO from its bound values, or ValidationFailed with every broken rule."""
    failures = validate(model, values, rules_for)
    if failures:
        raise ValidationFailed(failures)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        # A model whose rules miss what its types demand: still a 400 naming the field.
        raise ValidationFailed(field_errors(exc.errors())) from exc


def field_name(loc: Iterable[str | int]) -> str:
    """`("Articles", 0, "Quantity")` -> `Articles[0].Quantity`."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part != "body":
            name = f"{name}.{part}" if name else part
    return name


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[Failure]:
    """Pydantic's errors in FluentValidation's words: NotEmpty for a missing value, else Predicate."""
    result: list[Failure] = []
    for error in errors:
        name = field_name(error.get("loc", ()))
        display = split_pascal_case(name.rsplit(".", 1)[-1].split("[")[0])
        meta = Meta(PropertyName=display)
        if error.get("type") == "missing" or error.get("input") is None:
            result.append(Failure("NotEmpty", name, f"'{display}' must not be empty.", meta))
        else:
            result.append(
                Failure("Predicate", name, f"The specified condition was not met for '{display}'.", meta)
            )
    return result
