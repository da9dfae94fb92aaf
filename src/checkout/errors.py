"""Errors the checkout use case reports to its callers.

Each class is one outcome of the contract (`shared/reference/contract.md`, Errors); the
Lambda entry point maps them to HTTP statuses and the ServiceStack `ResponseStatus`
body. Messages are shown to booking frontends as they are, so they never carry a
secret, and they say plainly what happened.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigurationError(Exception):
    """The function's own configuration (environment) is malformed."""


@dataclass(frozen=True)
class FieldError:
    """One failing field, named as the client knows it (`Articles[0].Quantity`)."""

    error_code: str
    field_name: str
    message: str


class CheckoutError(Exception):
    """Base of the outcomes the entry point turns into a non-2xx response."""

    error_code: str = "CheckoutError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CheckoutError):
    """The request breaks one or more rules of the contract (400)."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidRequest needs at least one field error")
        super().__init__(errors[0].message)
        self.errors = errors
        self.error_code = errors[0].error_code


class CheckoutNotConfigured(CheckoutError):
    """No usable Stripe Checkout settings for the company (400).

    Deliberately the same answer whether the company is unknown, disabled or has no
    Stripe settings, so the endpoint cannot be used to probe which companies exist.
    """

    error_code = "CheckoutNotConfigured"

    def __init__(self) -> None:
        super().__init__("Stripe Checkout is not configured for this company.")


class AccessDenied(CheckoutError):
    """The caller's API key is not bound to the company (403).

    The same answer whether the company exists or not, so a key cannot be used to probe
    which companies exist.
    """

    error_code = "Forbidden"

    def __init__(self) -> None:
        super().__init__("The API key may not act for this company.")


class AlreadyPaid(CheckoutError):
    """The reference already has a completed checkout (409)."""

    error_code = "AlreadyPaid"

    def __init__(self) -> None:
        super().__init__("This reference already has a completed checkout; it cannot be paid again.")


class CheckoutInProgress(CheckoutError):
    """Another request is creating a checkout for the same reference right now (409)."""

    error_code = "CheckoutInProgress"

    def __init__(self) -> None:
        super().__init__("Another checkout for this reference is in progress; try again shortly.")


class UpstreamFailure(CheckoutError):
    """Stripe or AWS failed, throttled or timed out after retries (502, 503 or 504).

    `status` is the HTTP status to answer with; `stripe_request_id` is Stripe's
    `req_...` id when Stripe answered, so support can find the call in Stripe's logs.
    """

    def __init__(
        self, status: int, error_code: str, message: str, stripe_request_id: str | None = None
    ) -> None:
        if stripe_request_id:
            message = f"{message} (Stripe request id: {stripe_request_id})"
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.stripe_request_id = stripe_request_id


class StripeCredentialsUnusable(UpstreamFailure):
    """The company's Stripe key is missing, malformed, of the wrong mode for the stage, or
    refused even after a fresh fetch; `reason` says which when it is known before Stripe."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(
            502,
            "StripeCredentials",
            f"The company's Stripe key cannot be used: {reason}; contact support."
            if reason
            else "Stripe refused the company's credentials, or they are missing; contact support.",
        )


class StripeRejected(UpstreamFailure):
    """Stripe answered a call with a definite 4xx: the call created nothing."""


class StripeAuthRejected(Exception):
    """Stripe refused the API key (401); it may have been rotated since it was cached."""


class LeaseLost(Exception):
    """The registry lease on a reference passed to another request before we finished."""
