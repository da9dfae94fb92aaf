"""`checkout-admin`: onboard companies, bind API keys, catalogue articles, inspect and reconcile the registry.

Uses the function's own configuration variables (table names, secret name prefix, AWS
endpoint), so it works against a deployed stage and against the local API alike. The
Stripe secret key is read from standard input only, never from the command line, where
it would end up in shell history and process listings; typed or pasted at a terminal,
it is read without echo, so it stays off the screen and out of terminal recordings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import stripe
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from checkout.aws_clients import apigateway_client, dynamodb_client, secretsmanager_client
from checkout.company_store import (
    ArticleItem,
    CompanyNotOnboarded,
    DynamoCompanyDirectory,
    SettingsItem,
    bind_api_keys,
    put_article,
    put_settings,
)
from checkout.composition import build_reconciler
from checkout.config import Config
from checkout.domain import ArticleKey, ReferenceKey
from checkout.errors import CheckoutError, ConfigurationError, UsageError
from checkout.observability import logger
from checkout.session_registry import DynamoSessionRegistry
from checkout.stripe_keys import key_stage_problem
from checkout.url_policy import is_allowed, url_problem
from checkout.webhook_admin import add_webhook_commands, webhook_command

_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]+")
_SECRET_KEY = re.compile(r"(sk|rk)_(test|live)_[A-Za-z0-9]+")
_API_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")


def _guid(value: str) -> uuid.UUID:
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a GUID: {value!r}") from None
    if parsed.int == 0:
        raise argparse.ArgumentTypeError("the empty GUID is not a company id")
    return parsed


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value}")
    return number


def _amount(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"minor units are a whole number (995 for 9.95): {value!r}"
        ) from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return number


def _url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{value!r} {problem}")
    return value


def _api_key_id(value: str) -> str:
    if not _API_KEY_ID.fullmatch(value.strip()):
        raise argparse.ArgumentTypeError(f"not an API Gateway key id: {value!r}")
    return value.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="checkout-admin",
        description="Operate the Stripe checkout service: companies, articles, sessions. "
        "Configuration comes from the same environment variables as the function.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    company = commands.add_parser("company", help="company settings").add_subparsers(
        dest="action", required=True
    )
    put = company.add_parser("put", help="create or replace a company's Stripe Checkout settings")
    put.add_argument("--company-id", type=_guid, required=True)
    put.add_argument(
        "--stripe-account", help="connected account id (acct_...) when the company is on Stripe Connect"
    )
    put.add_argument(
        "--allowed-url-prefix",
        action="append",
        type=_url,
        default=[],
        metavar="URL",
        help="a URL prefix ConfirmationUrl and CancelUrl may use (repeatable)",
    )
    put.add_argument("--confirmation-url", type=_url, help="default confirmation URL")
    put.add_argument("--cancel-url", type=_url, help="default cancel URL (hosted mode)")
    put.add_argument(
        "--stripe-secret-key-stdin",
        action="store_true",
        help="read the company's Stripe secret key from standard input and store it in Secrets Manager",
    )
    put.add_argument("--disabled", action="store_true", help="store the settings with Checkout switched off")
    put.add_argument(
        "--refund-duplicate-payments",
        action="store_true",
        help="refund in full a second payment of an already paid reference (the reconciler does it)",
    )
    put.add_argument(
        "--api-key-id",
        action="append",
        type=_api_key_id,
        default=[],
        metavar="KEYID",
        help="bind an existing API Gateway key: requests with it may act for the company (repeatable; "
        "keys bound earlier stay bound)",
    )
    put.add_argument(
        "--unbind-api-key-id",
        action="append",
        type=_api_key_id,
        default=[],
        metavar="KEYID",
        help="stop a key from acting for the company (repeatable)",
    )

    apikey = commands.add_parser("apikey", help="API Gateway keys bound to companies").add_subparsers(
        dest="action", required=True
    )
    create = apikey.add_parser(
        "create", help="create an API key, add it to the stage's usage plan and bind it to the company"
    )
    create.add_argument("--company-id", type=_guid, required=True, help="an onboarded company")
    create.add_argument(
        "--usage-plan-id",
        help="the stage's usage plan (default: USAGE_PLAN_ID; the stack output UsagePlanId)",
    )

    article = commands.add_parser("article", help="catalogue articles").add_subparsers(
        dest="action", required=True
    )
    art = article.add_parser("put", help="create or replace a catalogued article")
    art.add_argument("--company-id", type=_guid, required=True)
    art.add_argument("--article-type-id", type=_positive, required=True)
    art.add_argument("--article-id", type=_positive, required=True)
    art.add_argument("--name", required=True, help="shown to the payer on the Checkout page")
    art.add_argument(
        "--unit-amount", type=_amount, required=True, metavar="MINOR_UNITS", help="price in minor units"
    )
    art.add_argument(
        "--currency", required=True, metavar="ISO4217", help="three-letter currency code, e.g. SEK"
    )
    art.add_argument("--inactive", action="store_true", help="store the article as not for sale")

    add_webhook_commands(commands, _guid)

    sessions = commands.add_parser("sessions", help="what the registry holds for a reference")
    sessions.add_argument("--company-id", type=_guid, required=True)
    sessions.add_argument("--reference", required=True, help="the InternalReferenceId")

    reconcile = commands.add_parser(
        "reconcile",
        help="run a reconciler pass now and print what it repaired",
        description="The scheduled reconciler's pass, by hand: what is due (older than "
        "RECONCILE_GRACE_MINUTES), then undelivered webhook events. With --reference, that "
        "one reference at once, due or not.",
    )
    reconcile.add_argument("--company-id", type=_guid, help="only this company's records")
    reconcile.add_argument("--reference", help="only this InternalReferenceId (needs --company-id)")
    return parser


def _store_secret_key(name: str, key: str) -> None:
    client = secretsmanager_client()
    try:
        client.create_secret(Name=name, SecretString=key, Description="Stripe secret key for checkout")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
            raise
        client.put_secret_value(SecretId=name, SecretString=key)


def _read_secret_key(stdin: Any) -> str:
    if stdin.isatty():
        return getpass.getpass("Stripe secret key (input hidden): ").strip()
    return str(stdin.read()).strip()


def _check_api_keys_exist(key_ids: Sequence[str]) -> None:
    gateway = apigateway_client()
    for key_id in key_ids:
        try:
            gateway.get_api_key(apiKey=key_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
            raise UsageError(f"no API Gateway key {key_id} in this account and region") from None


def company_put(args: argparse.Namespace, config: Config, stdin: Any) -> dict[str, Any]:
    """Validate and store a company's settings (and its key, when given on stdin)."""
    if args.stripe_account and not _ACCOUNT.fullmatch(args.stripe_account):
        raise UsageError(f"--stripe-account must look like acct_..., got {args.stripe_account!r}")
    for option, url in (("--confirmation-url", args.confirmation_url), ("--cancel-url", args.cancel_url)):
        if url and not is_allowed(url, args.allowed_url_prefix):
            raise UsageError(f"{option} {url} is not under any --allowed-url-prefix")
    _check_api_keys_exist(args.api_key_id)
    secret_name = f"{config.secret_name_prefix}{args.company_id}"
    if args.stripe_secret_key_stdin:
        key = _read_secret_key(stdin)
        if not _SECRET_KEY.fullmatch(key):
            raise UsageError("standard input must hold a Stripe secret key (sk_... or rk_...)")
        problem = key_stage_problem(key, config.stage)
        if problem is not None:
            raise UsageError(f"refused: {problem} (STAGE={config.stage})")
        _store_secret_key(secret_name, key)
    settings = SettingsItem(
        checkout_enabled=not args.disabled,
        stripe_secret_name=secret_name,
        stripe_account=args.stripe_account,
        allowed_url_prefixes=list(args.allowed_url_prefix),
        default_confirmation_url=args.confirmation_url,
        default_cancel_url=args.cancel_url,
        refund_duplicate_payments=args.refund_duplicate_payments,
    )
    dynamodb = dynamodb_client()
    bound = put_settings(dynamodb, config.companies_table, args.company_id, settings)
    if args.api_key_id or args.unbind_api_key_id:
        bound = bind_api_keys(
            dynamodb, config.companies_table, args.company_id, args.api_key_id, args.unbind_api_key_id
        )
    return {
        "company_id": str(args.company_id),
        "stage": config.stage,
        **settings.model_dump(exclude={"api_key_ids"}),
        "api_key_ids": sorted(bound),
        "stripe_secret_key_stored": bool(args.stripe_secret_key_stdin),
    }


def apikey_create(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Create an API key for one company: in the stage's usage plan, bound to the company."""
    plan = (args.usage_plan_id or os.environ.get("USAGE_PLAN_ID", "")).strip()
    if not plan:
        raise UsageError("--usage-plan-id is required (or USAGE_PLAN_ID: the stack output UsagePlanId)")
    dynamodb = dynamodb_client()
    if DynamoCompanyDirectory(dynamodb, config.companies_table, 0).company_settings(args.company_id) is None:
        raise UsageError(
            f"company {args.company_id} has no settings on stage {config.stage}; run company put first"
        )
    gateway = apigateway_client()
    key = gateway.create_api_key(
        name=f"stripe-checkout-{config.stage}-{args.company_id}",
        description=f"Stripe checkout ({config.stage}) for company {args.company_id}",
        enabled=True,
        tags={"stage": config.stage, "company-id": str(args.company_id)},
    )
    try:
        gateway.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
        bound = bind_api_keys(dynamodb, config.companies_table, args.company_id, bind=[key["id"]])
    except BaseException as exc:
        # A key outside the plan or bound to nothing is of no use to anyone: take it back.
        gateway.delete_api_key(apiKey=key["id"])
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NotFoundException":
            raise UsageError(f"no usage plan {plan} in this account and region") from None
        raise
    return {
        "company_id": str(args.company_id),
        "stage": config.stage,
        "usage_plan_id": plan,
        "api_key_id": key["id"],
        # Shown once, for the booking frontend's x-api-key header; API Gateway can show it again.
        "api_key": key["value"],
        "api_key_ids": sorted(bound),
    }


def article_put(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Validate and store a catalogued article."""
    try:
        item = ArticleItem(
            name=args.name.strip(),
            unit_amount=args.unit_amount,
            currency=args.currency.strip().lower(),
            active=not args.inactive,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from None
    key = ArticleKey(args.article_type_id, args.article_id)
    put_article(dynamodb_client(), config.companies_table, args.company_id, key, item)
    return {"company_id": str(args.company_id), **asdict(key), **item.model_dump()}


def sessions_show(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """The registry's record of a reference."""
    registry = DynamoSessionRegistry(dynamodb_client(), config.sessions_table, config.lease_seconds)
    state = registry.load(ReferenceKey(args.company_id, args.reference))
    return {
        "company_id": str(args.company_id),
        "reference": args.reference,
        "current_session_id": state.current_session_id,
        "payment_state": state.payment.state.value,
        "paid_session_id": state.payment.paid_session_id,
        "processing_session_id": state.payment.processing_session_id,
        "double_paid_session_ids": list(state.payment.extra_paid_session_ids),
        "open_session_ids": [s.session_id for s in state.open_sessions],
        "pending_attempts": len(state.pending_attempts),
        "lease_held": state.lease_held,
        "sessions": [
            {
                **asdict(s),
                "status": s.status.value,
                "state": s.state.value,
                "current": s.session_id == state.current_session_id,
            }
            for s in state.sessions
        ],
    }


@contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """The JSON printed at the end is the command's output; the log of the work it does
    (the reconciler's repairs, one line each) goes to standard error meanwhile."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous, handler.stream = handler.stream, sys.stderr
    try:
        yield
    finally:
        handler.stream = previous


def reconcile(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """One reconciler pass (or one reference), as the scheduled function runs it."""
    if args.reference is not None and args.company_id is None:
        raise UsageError("--reference needs --company-id")
    reconciler = build_reconciler(config)
    if args.reference is not None:
        report = reconciler.reconcile_reference(ReferenceKey(args.company_id, args.reference))
    else:
        report = reconciler.run(company_id=args.company_id)
    return report.to_dict()


def main(argv: Sequence[str] | None = None, stdin: Any = None) -> int:
    """Run one command; print its result as JSON. Exit 0 on success, 1 on AWS failure (or a
    reconcile that failed on something), 2 on bad input."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
        if args.command == "company":
            result = company_put(args, config, stdin or sys.stdin)
        elif args.command == "apikey":
            result = apikey_create(args, config)
        elif args.command == "article":
            result = article_put(args, config)
        elif args.command == "webhook":
            result = webhook_command(args, config, stdin or sys.stdin)
        elif args.command == "reconcile":
            with _logging_to_stderr():
                result = reconcile(args, config)
        else:
            result = sessions_show(args, config)
    except CompanyNotOnboarded as exc:
        parser.exit(2, f"checkout-admin: error: company {exc} has no settings; run company put first\n")
    except (UsageError, ConfigurationError) as exc:
        parser.exit(2, f"checkout-admin: error: {exc}\n")
    except (CheckoutError, ClientError, BotoCoreError) as exc:
        message = exc.message if isinstance(exc, CheckoutError) else str(exc)
        parser.exit(1, f"checkout-admin: AWS call failed: {message}\n")
    except stripe.StripeError as exc:
        parser.exit(1, f"checkout-admin: Stripe refused: {exc.user_message or type(exc).__name__}\n")
    print(json.dumps(result, indent=2, default=str))
    return 1 if result.get("failed") else 0
