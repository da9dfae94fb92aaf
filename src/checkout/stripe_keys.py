"""Each company's Stripe secret key, from Secrets Manager (cached, see `secrets_store`).

After Stripe refuses a key the Stripe gateway asks again with `refresh=True`, which is
how a rotated key is picked up before the cache would expire.

A stage reads only the secrets under its own name prefix (IAM says the same), and takes
only keys of its mode: live keys on prod, test keys everywhere else, so a development
stage can never move real money and prod can never take fake payments.
"""

from __future__ import annotations

from checkout.config import PRODUCTION
from checkout.errors import StripeCredentialsUnusable
from checkout.observability import logger
from checkout.secrets_store import SecretCache, SecretUnavailable

_KEY_PREFIXES = ("sk_", "rk_")  # secret or restricted key; never a publishable pk_
_LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


def key_stage_problem(key: str, stage: str) -> str | None:
    """Why the Stripe key `key` may not be used on `stage`, or None when it may."""
    live = key.startswith(_LIVE_KEY_PREFIXES)
    if stage == PRODUCTION and not live:
        return "the prod stage takes live Stripe keys only (sk_live_... or rk_live_...), not test keys"
    if stage != PRODUCTION and live:
        return f"a live Stripe key is accepted on the prod stage only, not on {stage} (use sk_test_...)"
    return None


class SecretsManagerKeys:
    """Stripe secret keys by Secrets Manager secret name, for one stage."""

    def __init__(self, secrets: SecretCache, *, stage: str, name_prefix: str) -> None:
        self._secrets = secrets
        self._stage = stage
        self._name_prefix = name_prefix

    def prefetch(self, secret_name: str) -> None:
        """Start loading a key that is not cached, without waiting for it."""
        if secret_name.startswith(self._name_prefix):
            self._secrets.prefetch(secret_name)

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        """The key stored under `secret_name`; cached unless `refresh`."""
        if not secret_name.startswith(self._name_prefix):
            logger.error("Stripe key secret outside this stage's prefix", extra={"prefix": self._name_prefix})
            raise StripeCredentialsUnusable(f"it is not stored under this stage's prefix {self._name_prefix}")
        try:
            value = self._secrets.get(secret_name, refresh=refresh).strip()
        except SecretUnavailable:
            raise StripeCredentialsUnusable() from None
        if not value.startswith(_KEY_PREFIXES):
            raise StripeCredentialsUnusable()
        problem = key_stage_problem(value, self._stage)
        if problem is not None:
            logger.error("Stripe key of the wrong mode for the stage", extra={"stage": self._stage})
            raise StripeCredentialsUnusable(problem)
        return value
