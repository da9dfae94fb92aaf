"""Each company's Stripe secret key, from Secrets Manager through Powertools parameters.

Keys are cached in memory across warm invocations; after Stripe rejects a key the use
case asks again with `refresh=True`, which is how a rotated key is picked up before the
cache would expire. Neither the key nor anything derived from it is ever logged.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from checkout.aws_clients import BOTO_CONFIG, aws_failure
from checkout.errors import StripeCredentialsUnusable

_KEY_PREFIXES = ("sk_", "rk_")  # secret or restricted key; never a publishable pk_


class SecretsManagerKeys:
    """Stripe secret keys by Secrets Manager secret name."""

    def __init__(self, cache_seconds: int) -> None:
        self._cache_seconds = cache_seconds
        self._provider = SecretsProvider(boto_config=BOTO_CONFIG)

    def get(self, secret_name: str, *, refresh: bool = False) -> str:
        """The key stored under `secret_name`; cached unless `refresh`."""
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
        return value.strip()
