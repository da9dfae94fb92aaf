"""Settings, catalogue and Stripe keys are cached per warm container, for a while only."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Api, Company, Stack, admin
from tests.integration.test_failures import use_service


def _reprice(company: Company, amount: int) -> None:
    admin(
        "article", "put", "--company-id", company.company_id, "--article-type-id", "1", "--article-id", "42",
        "--name", "Haircut 45 min", "--unit-amount", str(amount), "--currency", "SEK",
    )  # fmt: skip


def _charged(stack: Stack, session_id: str) -> int:
    return int(next(s for s in stack.emulator.sessions() if s["id"] == session_id)["amount_total"])


def test_a_warm_container_reuses_the_catalogue_within_its_ttl(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_service(monkeypatch, handler_module, settings_cache_seconds=3600)
    first = api.post(company.request()).json["SessionId"]
    _reprice(company, 50000)

    cached = api.post(company.request()).json["SessionId"]

    assert _charged(stack, first) == _charged(stack, cached) == 45000


def test_without_a_cache_a_new_price_applies_at_once(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_service(monkeypatch, handler_module, settings_cache_seconds=0)
    api.post(company.request())
    _reprice(company, 50000)

    fresh = api.post(company.request()).json["SessionId"]

    assert _charged(stack, fresh) == 50000


def test_the_stripe_key_is_fetched_once_per_ttl(
    api: Api, company: Company, stack: Stack, handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = use_service(monkeypatch, handler_module, secret_cache_seconds=3600)
    secrets = service._gateway._keys._secrets._client
    calls: list[str] = []
    original = secrets.get_secret_value

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["SecretId"])
        return original(**kwargs)

    monkeypatch.setattr(secrets, "get_secret_value", counting)

    for _ in range(3):
        assert api.post(company.request()).status == 200

    assert len(calls) == 1
