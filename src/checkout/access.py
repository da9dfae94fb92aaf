"""Which API keys may act for which company.

API Gateway checks the `x-api-key` header and hands the function the key's id in
`requestContext.identity.apiKeyId`. A key is bound to the companies it may act for
(`checkout-admin apikey create` or `company put --api-key-id`); the bound key ids are a
field of each company's settings. Every operation that takes a CompanyId calls
`AccessPolicy.check` right after reading the company's settings and before it reads or
reveals anything else about the company.

A key that is not bound to the company gets the same 403 as a request for a company
that does not exist, so a key holder cannot learn which other companies exist, expire
their sessions, learn whether their bookings are paid, or spend their Stripe rate limit.

Only a request that carries no key id at all (a bare `sam local invoke`, never one that
came through API Gateway) may pass unbound, and only where `ALLOW_UNBOUND_API_KEYS` is
set, which the configuration refuses on prod.
"""

from __future__ import annotations

from dataclasses import dataclass

from checkout.domain import CompanySettings
from checkout.errors import AccessDenied


@dataclass(frozen=True)
class AccessPolicy:
    """The rule that binds API keys to companies."""

    allow_unbound: bool = False

    def check(self, settings: CompanySettings | None, api_key_id: str | None) -> None:
        """Raise `AccessDenied` unless the caller's key is bound to the company.

        `settings` is None for a company without settings; the answer is then the same
        as for a key bound elsewhere.
        """
        if not api_key_id:
            if self.allow_unbound:
                return
            raise AccessDenied()
        if settings is None or api_key_id not in settings.api_key_ids:
            raise AccessDenied()


# The default everywhere: every request must carry a key bound to its company.
BOUND_KEYS_ONLY = AccessPolicy()
