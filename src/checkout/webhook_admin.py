"""`checkout-admin webhook ...`: register Stripe webhook endpoints and store their signing secrets.

`webhook create` registers an endpoint through Stripe's API, subscribed to exactly the
Checkout Session events the service handles, and stores the signing secret Stripe
returns; `webhook put-secret` stores a `whsec_...` secret read from standard input (an
endpoint made in the Stripe Dashboard, or `stripe listen` for local work). A second
secret is added beside the first, so an operator can roll a secret without losing
events; `--replace` drops the older ones once the roll is done.
"""

from __future__ import annotations

import argparse
import re
import uuid
from typing import Any

import stripe
from botocore.exceptions import ClientError

from checkout.aws_clients import secretsmanager_client
from checkout.config import Config
from checkout.errors import UsageError
from checkout.stripe_gateway import STRIPE_API_VERSION
from checkout.stripe_keys import key_stage_problem
from checkout.stripe_webhooks import (
    CONNECT,
    HANDLED_EVENTS,
    decode_signing_secrets,
    encode_signing_secrets,
    signing_secret_name,
)

_SIGNING_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
_SECRET_KEY = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9]+")


def add_webhook_commands(commands: Any, guid: Any) -> None:
    """The `webhook` command group of checkout-admin."""
    webhook = commands.add_parser("webhook", help="Stripe webhook endpoints and signing secrets")
    actions = webhook.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="register an endpoint in Stripe and store its signing secret")
    put = actions.add_parser("put-secret", help="store a signing secret (whsec_...) read from standard input")
    for sub in (create, put):
        scope = sub.add_mutually_exclusive_group(required=True)
        scope.add_argument("--company-id", type=guid, help="the company's own Stripe account")
        scope.add_argument(
            "--connect", action="store_true", help="the platform's Connect endpoint (connected accounts)"
        )
        sub.add_argument("--replace", action="store_true", help="drop the secrets stored before")
    create.add_argument(
        "--url",
        required=True,
        help="where Stripe delivers: https://<api>/payment/stripe/v1/webhook/<company-id> (or .../connect)",
    )
    create.add_argument(
        "--stripe-secret-key-stdin",
        action="store_true",
        help="with --connect: read the platform's Stripe secret key from standard input",
    )


def webhook_command(args: argparse.Namespace, config: Config, stdin: Any) -> dict[str, Any]:
    """Run `webhook create` or `webhook put-secret`."""
    scope = CONNECT if args.connect else str(args.company_id)
    if args.action == "put-secret":
        secret = stdin.read().strip()
        if not _SIGNING_SECRET.fullmatch(secret):
            raise UsageError("standard input must hold a webhook signing secret (whsec_...)")
        count = _store(config, scope, secret, replace=args.replace)
        return {"scope": scope, "signing_secrets_stored": count}
    endpoint = _create_endpoint(args, config, stdin, scope)
    count = _store(config, scope, str(endpoint["secret"]), replace=args.replace)
    return {
        "scope": scope,
        "webhook_endpoint_id": endpoint["id"],
        "url": endpoint["url"],
        "enabled_events": list(endpoint["enabled_events"]),
        "signing_secrets_stored": count,
    }


def _stripe_key(args: argparse.Namespace, config: Config, stdin: Any) -> str:
    if args.connect:
        if not args.stripe_secret_key_stdin:
            raise UsageError("--connect needs the platform's key: pass --stripe-secret-key-stdin")
        key = str(stdin.read()).strip()
        if not _SECRET_KEY.fullmatch(key):
            raise UsageError("standard input must hold a Stripe secret key (sk_... or rk_...)")
    else:
        name = f"{config.secret_name_prefix}{args.company_id}"
        try:
            key = str(secretsmanager_client().get_secret_value(SecretId=name)["SecretString"]).strip()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise UsageError("the company has no Stripe key stored: run company put first") from None
            raise
    # A test endpoint on prod or a live one on another stage would hear the wrong money.
    problem = key_stage_problem(key, config.stage)
    if problem is not None:
        raise UsageError(problem)
    return key


def _create_endpoint(args: argparse.Namespace, config: Config, stdin: Any, scope: str) -> dict[str, Any]:
    if not str(args.url).startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise UsageError("--url must be https (plain http only for localhost)")
    base = {"api": config.stripe_api_base} if config.stripe_api_base else None
    client = stripe.StripeClient(
        _stripe_key(args, config, stdin),
        stripe_version=STRIPE_API_VERSION,
        base_addresses=base,  # type: ignore[arg-type]
    )
    params: dict[str, Any] = {
        "url": args.url,
        "enabled_events": list(HANDLED_EVENTS),
        "api_version": STRIPE_API_VERSION,
        "description": f"stripe-checkout ({scope})",
    }
    if args.connect:
        params["connect"] = True
    endpoint = client.v1.webhook_endpoints.create(params=params)  # type: ignore[arg-type]
    return dict(endpoint.to_dict())


def _store(config: Config, scope: str, secret: str, *, replace: bool) -> int:
    client = secretsmanager_client()
    name = signing_secret_name(config.secret_name_prefix, scope)
    try:
        current = decode_signing_secrets(client.get_secret_value(SecretId=name)["SecretString"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        client.create_secret(
            Name=name,
            SecretString=encode_signing_secrets([secret]),
            Description="Stripe webhook signing secrets for checkout",
            ClientRequestToken=str(uuid.uuid4()),
        )
        return 1
    secrets = [secret] if replace else [secret, *(s for s in current if s != secret)]
    client.put_secret_value(SecretId=name, SecretString=encode_signing_secrets(secrets))
    return len(secrets)
