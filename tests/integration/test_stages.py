"""Stages keep apart: each its own secrets, live Stripe keys on prod only, test keys elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from types import ModuleType

import boto3
import pytest

from checkout.aws_clients import dynamodb_client
from checkout.company_store import SettingsItem, put_settings
from tests.conftest import SITE, STRIPE_KEY, Api, Company, Stack, onboard
from tests.integration.test_checkout_api import assert_error_body
from tests.integration.test_failures import use_service

CLI = [sys.executable, "-c", "import sys; from checkout.admin import main; sys.exit(main())"]
# Shaped like a live key, so the checks see one; it never reaches Stripe or the emulator.
LIVE_KEY = "sk_live_" + "51LiveShapedKeyNeverSent000000000"


def _company_put(stage: str, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "company", "put", "--company-id", str(uuid.uuid4()), "--stripe-secret-key-stdin"],
        input=key, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "STAGE": stage},
    )  # fmt: skip


def test_onboarding_refuses_a_live_key_outside_prod(stack: Stack) -> None:
    for stage in ("dev", "staging"):
        result = _company_put(stage, LIVE_KEY)

        assert result.returncode == 2
        assert f"a live Stripe key is accepted on the prod stage only, not on {stage}" in result.stderr


def test_onboarding_refuses_a_test_key_on_prod(stack: Stack) -> None:
    result = _company_put("prod", STRIPE_KEY)

    assert result.returncode == 2
    assert "the prod stage takes live Stripe keys only" in result.stderr


def test_prod_refuses_a_test_key_at_runtime_without_calling_stripe(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_service(monkeypatch, handler_module, stage="prod")
    calls = len(stack.emulator.requests())

    reply = api.post(company.request())

    status = assert_error_body(reply, 502, "StripeCredentials")
    assert "the prod stage takes live Stripe keys only" in status["Message"]
    assert len(stack.emulator.requests()) == calls


def test_a_development_stage_refuses_a_live_key_at_runtime(api: Api, stack: Stack) -> None:
    company = onboard()
    secret_name = f"checkout/dev/stripe/{company.company_id}"
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_name, SecretString=LIVE_KEY)
    calls = len(stack.emulator.requests())

    reply = api.post(company.request())

    status = assert_error_body(reply, 502, "StripeCredentials")
    assert "a live Stripe key is accepted on the prod stage only, not on dev" in status["Message"]
    assert len(stack.emulator.requests()) == calls


def test_a_stage_never_reads_another_stages_secret(api: Api, stack: Stack) -> None:
    company = onboard()
    settings = SettingsItem(
        stripe_secret_name=f"checkout/prod/stripe/{company.company_id}", allowed_url_prefixes=[f"{SITE}/"]
    )
    put_settings(
        dynamodb_client(), stack.env["COMPANIES_TABLE_NAME"], uuid.UUID(company.company_id), settings
    )

    reply = api.post(company.request())

    status = assert_error_body(reply, 502, "StripeCredentials")
    assert "checkout/dev/stripe/" in status["Message"]
