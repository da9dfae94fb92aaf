"""Errors the use cases report to their callers, and the one table of their HTTP statuses.

Each class is one outcome of the wire contract (`docs/contract.md`, Errors); the Lambda
entry points turn them into the ServiceStack `ResponseStatus` body with the status that
`http_status` gives. Messages are shown to booking frontends as they are, so they never
carry a secret, and they say plainly what happened.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigurationError(Exception):
    """The function's own configuration (environment) is malformed."""


class UsageError(Exception):
    """Bad input from the operator of checkout-admin (exit status 2)."""


@dataclass(frozen=True)
class FieldError:
    """One failing field, named as the client knows it (`Articles[0].Quantity`)."""

    error_code: str
    field_name: str
    message: str


# Every ErrorCode the service answers with, and its HTTP status. Field validation codes
# (NotEmpty, InvalidUrl, ...) are all 400 and are not listed one by one.
STATUS_BY_ERROR_CODE: dict[str, int] = {
    "CheckoutNotConfigured": 400,
    "InvalidSignature": 400,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyPaid": 409,
    "PaymentProcessing": 409,
    "CheckoutInProgress": 409,
    "TooManyCheckouts": 429,
    "InternalError": 500,
    "StripeRejected": 502,
    "StripeError": 502,
    "StripeUnreachable": 502,
    "StripeCredentials": 502,
    "StripeThrottled": 503,
    "StripeTimeout": 504,
    "AwsUnavailable": 503,
    "AwsThrottled": 503,
    "AwsTimeout": 504,
}


class CheckoutError(Exception):
    """Base of the outcomes the entry points turn into a non-2xx response."""

    error_code: str = "CheckoutError"
    # Seconds a client should wait before retrying (the `Retry-After` header), if any.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def http_status(error: CheckoutError) -> int:
    """The HTTP status of an error, from the table above."""
    if isinstance(error, InvalidRequest):
        return 400
    return STATUS_BY_ERROR_CODE[error.error_code]


class InvalidRequest(CheckoutError):
    """The request breaks one or more rules of the contract (400)."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidRequest needs at least one field error")
        super().__init__(errors[0].message)
        self.errors = errors
        self.error_code = errors[0].error_code


class CheckoutNotConfigured(CheckoutError):
    """No usable Stripe Checkout settings for the company.

    Deliberately the same answer whether the company is unknown, disabled or has no
    Stripe settings, so the endpoint cannot be used to probe which companies exist.
    """

    error_code = "CheckoutNotConfigured"

    def __init__(self) -> None:
        super().__init__("Stripe Checkout is not configured for this company.")


class AccessDenied(CheckoutError):
    """The caller's API key is not bound to the company.

    The same answer whether the company exists or not, so a key cannot be used to probe
    which companies exist (see access.py).
    """

    error_code = "Forbidden"

    def __init__(self) -> None:
        super().__init__("The API key may not act for this company.")


class NotFound(CheckoutError):
    """The thing asked about does not exist for this caller (404)."""

    error_code = "NotFound"


class AlreadyPaid(CheckoutError):
    """The reference is paid; it is not sold twice."""

    error_code = "AlreadyPaid"

    def __init__(self) -> None:
        super().__init__("This reference already has a completed checkout; it cannot be paid again.")


class PaymentProcessing(CheckoutError):
    """A delayed payment (bank debit, transfer) for the reference is settling."""

    error_code = "PaymentProcessing"

    def __init__(self) -> None:
        super().__init__(
            "A payment for this reference is being processed; a new checkout is possible only if it fails."
        )


class CheckoutInProgress(CheckoutError):
    """Another request is creating a checkout for the same reference right now."""

    error_code = "CheckoutInProgress"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("Another checkout for this reference is in progress; try again shortly.")


class TooManyCheckouts(CheckoutError):
    """The reference asked for more new sessions in a minute than it may."""

    error_code = "TooManyCheckouts"

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many checkouts for this reference in the last minute; retry later.")
        self.retry_after = retry_after


class UpstreamFailure(CheckoutError):
    """Stripe or AWS failed, throttled or timed out after retries (502, 503 or 504).

    `stripe_request_id` is Stripe's `req_...` id when Stripe answered, so support can
    find the call in Stripe's logs.
    """

    def __init__(self, error_code: str, message: str, stripe_request_id: str | None = None) -> None:
        if stripe_request_id:
            message = f"{message} (Stripe request id: {stripe_request_id})"
        super().__init__(message)
        self.error_code = error_code
        self.stripe_request_id = stripe_request_id

    @property
    def from_stripe(self) -> bool:
        """True when Stripe (not AWS) failed."""
        return self.error_code.startswith("Stripe")


class StripeCredentialsUnusable(UpstreamFailure):
    """The company's Stripe key is missing, malformed, of the wrong mode for the stage, or
    refused even after a fresh fetch; `reason` says which when it is known before Stripe."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(
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
