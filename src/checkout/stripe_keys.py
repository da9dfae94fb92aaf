"""Each company's Stripe secret key, from Secrets Manager (cached, see `secrets_store`).

After Stripe refuses a key the Stripe gateway asks again with `refresh=True`, which is
how a rotated key is picked up before the cache would expire.
"""

from __future__ import annotations

from checkout.errors import StripeCredentialsUnusable
from checkout.secrets_store import SecretCache, SecretUnavailable

_KEY_PREFIXES = ("sk_", "rk_")  # secret or restricted key; never a publishable pk_


class SecretsManagerKeys:
    """Stripe secret keys by Secrets Manager secret name."""

    def __init__(self, secrets: SecretCache) -> None:
        self._secrets = secrets

    def prefetch(self, secret_name: str) -> None:
        """Start loading a key that is not cached, without waiting for it."""
        self._secrets.prefetch(secret_name)

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        """The key stored under `secret_name`; cached unless `refresh`."""
        try:
            value = self._secrets.get(secret_name, refresh=refresh).strip()
        except SecretUnavailable:
            raise StripeCredentialsUnusable() from None
        if not value.startswith(_KEY_PREFIXES):
            raise StripeCredentialsUnusable()
        return value
