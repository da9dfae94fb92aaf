"""Each company's Stripe secret key, from Secrets Manager through Powertools parameters.

Keys are cached in memory across warm invocations; after Stripe rejects a key the use
case asks again with `refresh=True`, which is how a rotated key is picked up before the
cache would expire. Neither the key nor anything derived from it is ever logged.

A stage reads only the secrets under its own name prefix (IAM says the same), and takes
only keys of its mode: live keys on prod, test keys everywhere else, so a development
stage can never move real money and prod can never take fake payments.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from checkout.aws_clients import BOTO_CONFIG, aws_failure
from checkout.config import PRODUCTION
from checkout.errors import StripeCredentialsUnusable
from checkout.observability import logger

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

    def __init__(self, cache_seconds: int, stage: str, name_prefix: str) -> None:
        self._cache_seconds = cache_seconds
        self._stage = stage
        self._name_prefix = name_prefix
        self._provider = SecretsProvider(boto_config=BOTO_CONFIG)

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        """The key stored under `secret_name`; cached unless `refresh`."""
        if not secret_name.startswith(self._name_prefix):
            logger.error("Stripe key secret outside this stage's prefix", extra={"prefix": self._name_prefix})
            raise StripeCredentialsUnusable(f"it is not stored under this stage's prefix {self._name_prefix}")
        try:
            value = self._provider.get(secret_name, max_age=self._cache_seconds, force_fetch=refresh)
        except GetParameterError as exc:
            cause = exc.__context__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in {
                "ResourceNotFoundException",
                "AccessDeniedException",
                "DecryptionFailure",
            }:
                raise StripeCredentialsUnusable() from None
            raise aws_failure(cause if isinstance(cause, Exception) else exc, "Secrets Manager") from None
        if not isinstance(value, str) or not value.strip().startswith(_KEY_PREFIXES):
            raise StripeCredentialsUnusable()
        key = value.strip()
        problem = key_stage_problem(key, self._stage)
        if problem is not None:
            logger.error("Stripe key of the wrong mode for the stage", extra={"stage": self._stage})
            raise StripeCredentialsUnusable(problem)
        return key
