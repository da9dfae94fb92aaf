"""Settings, catalogue and Stripe keys are cached per warm container, for a while only."""

from __future__ import annotations

import uuid
from concurrent.futures import Executor, Future
from types import ModuleType
from typing import Any

import pytest

from checkout.aws_clients import dynamodb_client
from checkout.company_store import DynamoCompanyDirectory
from checkout.domain import ArticleKey
from tests.conftest import TABLES, Api, Company, Stack, admin
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


class _Inline(Executor):
    """Runs submitted work at once, so a background refresh is observable in a test."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_an_entry_near_its_end_is_served_and_refreshed_in_the_background(
    company: Company, stack: Stack
) -> None:
    now = [1000.0]
    directory = DynamoCompanyDirectory(
        dynamodb_client(), TABLES["COMPANIES_TABLE_NAME"], 10, refresher=_Inline(), clock=lambda: now[0]
    )
    reads: list[int] = []
    original = directory._batch_get

    def counting(*args: Any) -> Any:
        reads.append(1)
        return original(*args)

    directory._batch_get = counting  # type: ignore[method-assign,assignment]
    company_id, key = uuid.UUID(company.company_id), ArticleKey(1, 42)
    assert directory.catalogue(company_id, [key])[1][key].unit_amount == 45000
    _reprice(company, 50000)

    now[0] += 5  # young: served from the cache, no read
    assert directory.catalogue(company_id, [key])[1][key].unit_amount == 45000
    now[0] += 4  # in its last fifth: still served, and read again behind it
    assert directory.catalogue(company_id, [key])[1][key].unit_amount == 45000

    assert len(reads) == 2
    assert directory.catalogue(company_id, [key])[1][key].unit_amount == 50000
    assert len(reads) == 2  # the refreshed entry is fresh again
