"""Company settings and article catalogue in DynamoDB, cached per warm container.

Read by the function, written by `checkout-admin`. Key layout: `dynamodb_layout`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from checkout import dynamodb_layout as layout
from checkout.aws_clients import aws_errors, from_item, to_item
from checkout.domain import Article, ArticleKey, CompanySettings
from checkout.errors import UpstreamFailure
from checkout.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_BATCH_GET_LIMIT = 100
_SERVICE = "DynamoDB"


class SettingsItem(BaseModel):
    """The stored shape of a company's settings item."""

    model_config = ConfigDict(extra="ignore")

    checkout_enabled: bool = True
    stripe_secret_name: str = Field(min_length=1)
    stripe_account: str | None = None
    allowed_url_prefixes: list[str] = Field(default_factory=list)
    default_confirmation_url: str | None = None
    default_cancel_url: str | None = None
    refund_duplicate_payments: bool = False
    # A DynamoDB string set, changed only by bind_api_keys: storing the settings again
    # keeps the company's keys working.
    api_key_ids: frozenset[str] = frozenset()

    def to_domain(self, company_id: uuid.UUID) -> CompanySettings:
        """The settings as the use case sees them."""
        return CompanySettings(
            company_id=company_id,
            checkout_enabled=self.checkout_enabled,
            stripe_secret_name=self.stripe_secret_name,
            stripe_account=self.stripe_account,
            allowed_url_prefixes=tuple(self.allowed_url_prefixes),
            default_confirmation_url=self.default_confirmation_url,
            default_cancel_url=self.default_cancel_url,
            refund_duplicate_payments=self.refund_duplicate_payments,
            api_key_ids=self.api_key_ids,
        )


class ArticleItem(BaseModel):
    """The stored shape of a catalogued article."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=250)
    unit_amount: int = Field(ge=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    active: bool = True


# In the last fifth of an entry's life a request still uses it but has it read again in
# the background, so a busy container never waits for a refresh on its critical path and
# no entry is ever older than the TTL.
_REFRESH_AHEAD = 0.2


class _TtlCache[K, V]:
    """A small per-container cache; entries live `ttl` seconds (0 disables caching)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def due(self, key: K) -> bool:
        """True when a cached entry is close to expiring and should be read again."""
        entry = self._entries.get(key)
        return entry is not None and entry[0] - self._clock() < self._ttl * _REFRESH_AHEAD

    def put(self, key: K, value: V) -> None:
        if self._ttl > 0:
            self._entries[key] = (self._clock() + self._ttl, value)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)


class DynamoCompanyDirectory:
    """Reads settings and articles; misses are not cached, so onboarding shows at once."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        cache_seconds: float,
        refresher: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._table = table
        self._refresher = refresher
        self._refreshing: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._settings: _TtlCache[uuid.UUID, CompanySettings] = _TtlCache(cache_seconds, clock)
        self._articles: _TtlCache[tuple[uuid.UUID, ArticleKey], Article] = _TtlCache(cache_seconds, clock)

    def company_settings(self, company_id: uuid.UUID) -> CompanySettings | None:
        """The company's settings, or None when it has none."""
        return self.catalogue(company_id, ())[0]

    def catalogue(
        self, company_id: uuid.UUID, keys: Iterable[ArticleKey]
    ) -> tuple[CompanySettings | None, dict[ArticleKey, Article]]:
        """The company's settings and the catalogued articles among `keys` (absent ones
        are missing from the result), read in one BatchGetItem for whatever is not cached."""
        settings = self._settings.get(company_id)
        found: dict[ArticleKey, Article] = {}
        wanted: list[ArticleKey] = []
        for key in dict.fromkeys(keys):
            cached = self._articles.get((company_id, key))
            if cached is not None:
                found[key] = cached
            else:
                wanted.append(key)
        if settings is not None and not wanted:
            self._refresh_ahead(company_id, list(found))
            return settings, found
        read_settings, read = self._read(company_id, settings is None, wanted)
        return settings or read_settings, found | read

    def _read(
        self, company_id: uuid.UUID, with_settings: bool, wanted: Sequence[ArticleKey]
    ) -> tuple[CompanySettings | None, dict[ArticleKey, Article]]:
        """Read (and cache) the settings if asked and the `wanted` articles, in BatchGetItems."""
        settings: CompanySettings | None = None
        found: dict[ArticleKey, Article] = {}
        sort_keys = [layout.SETTINGS_SK] if with_settings else []
        sort_keys += [layout.article_sk(k) for k in wanted]
        by_sk = {layout.article_sk(k): k for k in wanted}
        for start in range(0, len(sort_keys), _BATCH_GET_LIMIT):
            for values in self._batch_get(company_id, sort_keys[start : start + _BATCH_GET_LIMIT]):
                sk = str(values[layout.SK])
                if sk == layout.SETTINGS_SK:
                    settings = SettingsItem.model_validate(values).to_domain(company_id)
                    self._settings.put(company_id, settings)
                else:
                    item = ArticleItem.model_validate(values)
                    key = by_sk[sk]
                    article = Article(key, item.name, item.unit_amount, item.currency, item.active)
                    found[key] = article
                    self._articles.put((company_id, key), article)
        return settings, found

    def _refresh_ahead(self, company_id: uuid.UUID, keys: list[ArticleKey]) -> None:
        if self._refresher is None:
            return
        if not self._settings.due(company_id) and not any(self._articles.due((company_id, k)) for k in keys):
            return
        with self._lock:
            if company_id in self._refreshing:
                return
            self._refreshing.add(company_id)
        self._refresher.submit(self._refresh, company_id, keys)

    def _refresh(self, company_id: uuid.UUID, keys: list[ArticleKey]) -> None:
        try:
            settings, found = self._read(company_id, True, keys)
            # Gone from the table since they were cached: forget them, as a miss would.
            if settings is None:
                self._settings.drop(company_id)
            for key in keys:
                if key not in found:
                    self._articles.drop((company_id, key))
        except Exception:
            logger.warning("Refreshing the cached catalogue failed", exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(company_id)

    def _batch_get(self, company_id: uuid.UUID, sort_keys: Sequence[str]) -> list[dict[str, Any]]:
        pk = layout.company_pk(company_id)
        request: dict[str, Any] = {
            self._table: {
                "Keys": [to_item({layout.PK: pk, layout.SK: sk}) for sk in sort_keys],
                "ConsistentRead": True,
            }
        }
        items: list[dict[str, Any]] = []
        # BatchGetItem may return part of the keys as unprocessed under load; ask again
        # for those (botocore's retries cover errors, not partial answers).
        for attempt in range(5):
            with aws_errors(_SERVICE):
                response = self._client.batch_get_item(RequestItems=request)
            items.extend(from_item(raw) for raw in response.get("Responses", {}).get(self._table, []))
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                return items
            time.sleep(0.05 * 2**attempt)
        raise UpstreamFailure("AwsThrottled", "DynamoDB is throttling requests; please retry.")


class CompanyNotOnboarded(Exception):
    """An API key was to be bound to a company that has no settings."""


def _settings_key(company_id: uuid.UUID) -> dict[str, Any]:
    return to_item({layout.PK: layout.company_pk(company_id), layout.SK: layout.SETTINGS_SK})


def put_settings(
    client: DynamoDBClient, table: str, company_id: uuid.UUID, settings: SettingsItem
) -> frozenset[str]:
    """Create or replace a company's settings (operator CLI), keeping its bound API keys.

    Returns the ids of the API keys bound to the company.
    """
    values: dict[str, Any] = settings.model_dump(exclude={"api_key_ids"}) | {"updated_at": now_iso()}
    fields = list(values)
    assigned = [f"#f{i} = :f{i}" for i, name in enumerate(fields) if values[name] is not None]
    removed = [f"#f{i}" for i, name in enumerate(fields) if values[name] is None]
    expression = "SET " + ", ".join(assigned) + (" REMOVE " + ", ".join(removed) if removed else "")
    with aws_errors(_SERVICE):
        response = client.update_item(
            TableName=table,
            Key=_settings_key(company_id),
            UpdateExpression=expression,
            ExpressionAttributeNames={f"#f{i}": name for i, name in enumerate(fields)},
            ExpressionAttributeValues=to_item({f":f{i}": values[name] for i, name in enumerate(fields)}),
            ReturnValues="ALL_NEW",
        )
    return frozenset(from_item(response["Attributes"]).get("api_key_ids", ()))


def bind_api_keys(
    client: DynamoDBClient,
    table: str,
    company_id: uuid.UUID,
    bind: Iterable[str] = (),
    unbind: Iterable[str] = (),
) -> frozenset[str]:
    """Bind API keys to an onboarded company and unbind others (operator CLI).

    Each change is one atomic update of the string set, so concurrent bindings of other
    keys are not lost. `CompanyNotOnboarded` when the company has no settings. Returns
    the ids bound afterwards.
    """
    bound: frozenset[str] | None = None
    for clause, keys in (("ADD", sorted(set(bind))), ("DELETE", sorted(set(unbind)))):
        if not keys:
            continue
        with aws_errors(_SERVICE, on_condition_failed=lambda _: CompanyNotOnboarded(str(company_id))):
            response = client.update_item(
                TableName=table,
                Key=_settings_key(company_id),
                UpdateExpression=f"{clause} api_key_ids :keys SET updated_at = :now",
                ConditionExpression=f"attribute_exists({layout.PK})",
                ExpressionAttributeValues={":keys": {"SS": keys}, ":now": {"S": now_iso()}},
                ReturnValues="ALL_NEW",
            )
        bound = frozenset(from_item(response["Attributes"]).get("api_key_ids", ()))
    if bound is None:
        raise ValueError("bind_api_keys needs a key to bind or unbind")
    return bound


def put_article(
    client: DynamoDBClient, table: str, company_id: uuid.UUID, key: ArticleKey, article: ArticleItem
) -> None:
    """Create or replace a catalogued article (operator CLI)."""
    values: dict[str, Any] = {
        layout.PK: layout.company_pk(company_id),
        layout.SK: layout.article_sk(key),
        "updated_at": now_iso(),
    }
    values |= {"article_type_id": key.article_type_id, "article_id": key.article_id}
    with aws_errors(_SERVICE):
        client.put_item(TableName=table, Item=to_item(values | article.model_dump()))


def now_iso() -> str:
    """Timestamp for `updated_at` attributes."""
    return datetime.now(UTC).isoformat(timespec="seconds")
