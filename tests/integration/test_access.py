"""Per-company access: an API key acts only for the companies it is bound to.

API Gateway hands the function the id of the key it accepted; these tests send that id
as API Gateway would, and create and bind keys with checkout-admin against moto's API
Gateway (a usage plan stands in for the stage's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.conftest import SITE, Api, Company, Stack, admin, onboard
from tests.integration.test_checkout_api import assert_error_body
from tests.integration.test_failures import use_service

CLI = [sys.executable, "-c", "import sys; from checkout.admin import main; sys.exit(main())"]


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv], capture_output=True, text=True, timeout=60, check=False, env=env or dict(os.environ)
    )


def _stripe_calls(stack: Stack) -> int:
    return len(stack.emulator.requests())


def _forbidden(reply: Any) -> None:
    status = assert_error_body(reply, 403, "Forbidden")
    assert status["Message"] == "The API key may not act for this company."
    assert status.get("Errors", []) == []


def test_a_key_bound_to_company_a_cannot_act_for_company_b(api: Api, stack: Stack) -> None:
    company_a, company_b = onboard(), onboard()
    first = api.post(company_b.request("booking-b"))
    assert first.status == 200, first.text
    registry_before = company_b.sessions("booking-b")
    calls = _stripe_calls(stack)

    reply = api.post(company_b.request("booking-b"), api_key_id=company_a.api_key_id)

    _forbidden(reply)
    assert _stripe_calls(stack) == calls
    assert company_b.sessions("booking-b") == registry_before
    still_open = next(s for s in stack.emulator.sessions() if s["id"] == first.json["SessionId"])
    assert still_open["status"] == "open"


def test_an_unknown_company_gets_the_same_403_as_a_company_the_key_is_not_bound_to(
    api: Api, company: Company
) -> None:
    other = onboard()

    unknown = api.post(company.request(CompanyId=str(uuid.uuid4())), api_key_id=company.api_key_id)
    foreign = api.post(other.request(), api_key_id=company.api_key_id)

    _forbidden(unknown)
    assert unknown.text == foreign.text


def test_a_request_without_a_key_id_is_refused(api: Api, company: Company, stack: Stack) -> None:
    calls = _stripe_calls(stack)

    _forbidden(api.post(company.request(), api_key_id=None))
    assert _stripe_calls(stack) == calls


def test_the_body_is_validated_before_the_key_is_checked(api: Api, company: Company) -> None:
    other = onboard()

    reply = api.post(other.request(Articles=[]), api_key_id=company.api_key_id)

    assert_error_body(reply, 400, "NotEmpty", "Articles")


def test_apikey_create_adds_a_key_to_the_usage_plan_and_binds_it(
    api: Api, company: Company, stack: Stack
) -> None:
    created = admin("apikey", "create", "--company-id", company.company_id)

    gateway = boto3.client("apigateway")
    key = gateway.get_api_key(apiKey=created["api_key_id"], includeValue=True)
    in_plan = gateway.get_usage_plan_keys(usagePlanId=stack.env["USAGE_PLAN_ID"])["items"]
    assert key["enabled"] is True and key["value"] == created["api_key"]
    assert created["api_key_id"] in {k["id"] for k in in_plan}
    assert created["usage_plan_id"] == stack.env["USAGE_PLAN_ID"] and created["stage"] == "dev"
    assert set(created["api_key_ids"]) == {company.api_key_id, created["api_key_id"]}
    assert api.post(company.request(), api_key_id=created["api_key_id"]).status == 200


def test_company_put_binds_existing_keys_keeps_them_and_unbinds_on_request(
    api: Api, stack: Stack, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A warm container sees a change of bindings after SETTINGS_CACHE_SECONDS; here at once.
    use_service(monkeypatch, handler_module, settings_cache_seconds=0)
    company_a, company_c = onboard(), onboard()

    def put_c(*options: str) -> dict[str, Any]:
        return admin(
            "company",
            "put",
            "--company-id",
            company_c.company_id,
            "--allowed-url-prefix",
            f"{SITE}/",
            *options,
        )

    bound = put_c("--api-key-id", company_a.api_key_id)
    assert api.post(company_c.request(), api_key_id=company_a.api_key_id).status == 200
    kept = put_c()
    assert api.post(company_c.request(), api_key_id=company_a.api_key_id).status == 200
    unbound = put_c("--unbind-api-key-id", company_a.api_key_id)

    _forbidden(api.post(company_c.request(), api_key_id=company_a.api_key_id))
    assert (
        set(bound["api_key_ids"]) == set(kept["api_key_ids"]) == {company_a.api_key_id, company_c.api_key_id}
    )
    assert unbound["api_key_ids"] == [company_c.api_key_id]


def test_binding_a_key_that_does_not_exist_is_refused(stack: Stack) -> None:
    result = run("company", "put", "--company-id", str(uuid.uuid4()), "--api-key-id", "nosuchkey1")

    assert result.returncode == 2
    assert "no API Gateway key nosuchkey1" in result.stderr


def test_apikey_create_refuses_a_company_without_settings_and_leaves_no_key(stack: Stack) -> None:
    gateway = boto3.client("apigateway")
    keys_before = len(gateway.get_api_keys()["items"])

    result = run("apikey", "create", "--company-id", str(uuid.uuid4()))

    assert result.returncode == 2
    assert "has no settings on stage dev" in result.stderr
    assert len(gateway.get_api_keys()["items"]) == keys_before


def test_apikey_create_needs_the_usage_plan(company: Company) -> None:
    env = {k: v for k, v in os.environ.items() if k != "USAGE_PLAN_ID"}

    result = run("apikey", "create", "--company-id", company.company_id, env=env)
    with_option = run(
        "apikey",
        "create",
        "--company-id",
        company.company_id,
        "--usage-plan-id",
        os.environ["USAGE_PLAN_ID"],
        env=env,
    )

    assert result.returncode == 2 and "--usage-plan-id is required" in result.stderr
    assert with_option.returncode == 0, with_option.stderr
