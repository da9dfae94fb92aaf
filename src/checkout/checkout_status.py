"""The checkout status use case: where a session this service created stands.

A frontend asks after the payer returns (and may ask again). A session the registry
holds as settled answers from the registry; one it still holds as open or settling is
retrieved from Stripe and what Stripe says is recorded through the one transition
function, so asking also repairs a webhook that never arrived.
"""

from __future__ import annotations

from typing import Protocol

from checkout.access import BOUND_KEYS_ONLY, AccessPolicy
from checkout.contract import StripeCheckoutStatusResponse, StripeV1GetCheckoutStatus
from checkout.domain import CheckoutSession, Merchant, ReferenceKey, SessionRecord, SessionState
from checkout.errors import NotFound
from checkout.reference_transitions import Transition
from checkout.service import CompanyDirectory, EventRelay, PaymentGateway, relay_quietly

_UNSETTLED = {SessionState.OPEN, SessionState.PROCESSING}


class SessionLookup(Protocol):
    """The registry, as the status operation uses it."""

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None: ...

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None: ...


class CheckoutStatusService:
    """The StripeV1GetCheckoutStatus use case."""

    def __init__(
        self,
        directory: CompanyDirectory,
        gateway: PaymentGateway,
        registry: SessionLookup,
        relay: EventRelay,
        access: AccessPolicy = BOUND_KEYS_ONLY,
    ) -> None:
        self._access = access
        self._directory = directory
        self._gateway = gateway
        self._registry = registry
        self._relay = relay

    def status(
        self, request: StripeV1GetCheckoutStatus, *, api_key_id: str | None
    ) -> StripeCheckoutStatusResponse:
        """The session's status; `NotFound` unless this service created it for the company.

        `api_key_id` is the caller's API Gateway key (see access.py).
        """
        settings, _ = self._directory.catalogue(request.company_id, ())
        self._access.check(settings, api_key_id)
        found = self._registry.find_session(request.session_id)
        if found is None or found[0].company_id != request.company_id:
            # The same answer for "no such session" and "another company's": nothing leaks.
            raise NotFound("No checkout session with this id exists for the company.")
        key, record = found
        if record.state in _UNSETTLED and settings is not None:
            merchant = Merchant(settings.stripe_secret_name, record.stripe_account)
            session = self._gateway.retrieve_session(merchant, record.session_id)
            self._registry.apply_news(key, session)
            relay_quietly(self._relay, key)
            return StripeCheckoutStatusResponse(
                status=session.status.value,
                payment_status=session.payment_status,
                customer_email=session.customer_email or record.customer_email,
                internal_reference_id=key.reference,
            )
        return StripeCheckoutStatusResponse(
            status=record.status.value,
            payment_status=record.payment_status,
            customer_email=record.customer_email,
            internal_reference_id=key.reference,
        )
