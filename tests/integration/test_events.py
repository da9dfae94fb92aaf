"""Every file in events/ goes through the handler and gets the answer it is there to show."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from localdev.apigw import LocalContext
from localdev.aws_stack import FUNCTION
from localdev.cfn_template import load_template
from localdev.local_api import DEMO_COMPANY_ID, onboard_demo_company
from tests.conftest import STRIPE_KEY, Api, Stack
from tests.integration.test_failures import use_service

EVENTS = Path(__file__).resolve().parents[2] / "events"
ENV_FILE = "env.json"


def _hosted(status: int, body: dict[str, Any]) -> None:
    assert status == 200, body
    assert body["Status"] == "open" and body["Url"] and "ClientSecret" not in body


def _embedded(status: int, body: dict[str, Any]) -> None:
    assert status == 200, body
    assert body["Status"] == "open" and body["ClientSecret"] and "Url" not in body


def _validation_error(status: int, body: dict[str, Any]) -> None:
    assert status == 400
    assert body["ResponseStatus"]["Errors"][0]["FieldName"] == "Articles"


def _preflight(status: int, body: dict[str, Any]) -> None:
    assert status == 204


def _not_found(status: int, body: dict[str, Any]) -> None:
    assert status == 404 and body["ResponseStatus"]["ErrorCode"] == "NotFound"


def _stale_signature(status: int, body: dict[str, Any]) -> None:
    # A recorded delivery: its signature is long past the 300 s tolerance, as any replay is.
    assert status == 400 and body["ResponseStatus"]["ErrorCode"] == "InvalidSignature"


def _reconcile_pass(status: int, body: dict[str, Any]) -> None:
    # A scheduled event: the reconciler's answer is its report (what it did depends on
    # what earlier tests left; that it ran within its time is what this shows).
    assert status == 0
    assert {"repaired", "failed", "more_remains", "references_checked"} <= set(body)
    assert body["more_remains"] is False


EXPECTED = {
    "hosted.json": _hosted,
    "embedded.json": _embedded,
    "validation-error.json": _validation_error,
    "cors-preflight.json": _preflight,
    "status-not-found.json": _not_found,
    "webhook-stale-signature.json": _stale_signature,
    "reconcile-schedule.json": _reconcile_pass,
}
# The function each non-API event is for, by its EventBridge source.
SCHEDULED = {"aws.events": "handlers.reconciler"}


@pytest.fixture(scope="module")
def demo_company(stack: Stack) -> str:
    # The same onboarding `./dev run` does, which the events are written for.
    onboard_demo_company("http://localhost:3000", STRIPE_KEY)
    return DEMO_COMPANY_ID


def test_every_event_file_has_an_expected_answer() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json") if p.name != ENV_FILE) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_goes_through_the_handler(
    api: Api, demo_company: str, name: str, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The events carry no API key id, as `sam local invoke` sends them; env.json allows that.
    overrides = json.loads((EVENTS / ENV_FILE).read_text(encoding="utf-8"))[FUNCTION]
    use_service(
        monkeypatch, handler_module, allow_unbound_api_keys=overrides["ALLOW_UNBOUND_API_KEYS"] == "true"
    )
    event = json.loads((EVENTS / name).read_text(encoding="utf-8"))

    if event.get("source") in SCHEDULED:
        EXPECTED[name](
            0, importlib.import_module(SCHEDULED[event["source"]]).lambda_handler(event, LocalContext())
        )
        return
    if event["path"].startswith("/payment/stripe/v1/webhook/"):
        answer = importlib.import_module("handlers.stripe_webhook").lambda_handler(event, LocalContext())
        EXPECTED[name](answer["statusCode"], json.loads(answer["body"]))
        return
    reply = api.invoke(event)

    EXPECTED[name](reply.status, json.loads(reply.text) if reply.text else {})
    origin = event["headers"].get("Origin")
    if origin:
        assert reply.headers.get("Access-Control-Allow-Origin") == origin


def test_env_vars_file_overrides_only_variables_the_template_declares() -> None:
    resources = load_template()["Resources"]
    overrides = json.loads((EVENTS / ENV_FILE).read_text(encoding="utf-8"))

    assert set(overrides) == {FUNCTION, "WebhookFunction", "ReconcilerFunction"}
    for function, variables in overrides.items():
        assert set(variables) <= set(resources[function]["Properties"]["Environment"]["Variables"])
    origins = overrides[FUNCTION]["CORS_ALLOWED_ORIGINS"].split(",")
    for name in EXPECTED:
        origin = json.loads((EVENTS / name).read_text(encoding="utf-8")).get("headers", {}).get("Origin")
        assert origin is None or origin in origins
