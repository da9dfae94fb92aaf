"""The DynamoDB key layout of both tables, defined here and nowhere else.

Both tables use a generic composite key, `pk` (partition) and `sk` (sort), both strings,
so one Query returns everything that belongs together. `template.yaml` declares the
same key schema; the tests create their tables from the template, so the two cannot
drift apart.

Companies table (settings and catalogue, written by `checkout-admin`):

    pk = COMPANY#<company-guid>   sk = SETTINGS
        checkout_enabled, stripe_secret_name, stripe_account, allowed_url_prefixes,
        default_confirmation_url, default_cancel_url, updated_at,
        api_key_ids (string set: the API Gateway keys that may act for the company)
    pk = COMPANY#<company-guid>   sk = ARTICLE#<article-type-id>#<article-id>
        name, unit_amount (minor units), currency (ISO 4217, lower case), active, updated_at

Sessions table (the session registry, written by the function; financial history):

    pk = REFERENCE#<company-guid>#<internal-reference-id>   sk = HEAD
        company_id, reference, current_session_id, completed_session_id,
        lease_owner, lease_expires_at_ms (epoch ms), pending_attempt (map), updated_at (epoch s),
        due_shard, due_at_ms (while attempts are pending; see the due index below)
    pk = REFERENCE#<company-guid>#<internal-reference-id>   sk = SESSION#<checkout-session-id>
        session_id, company_id, reference, status, payment_status, ui_mode, stripe_account,
        amount_total, currency, livemode, created_at_ms (epoch ms, orders the history), updated_at (epoch s),
        double_payment (true when it paid an already paid reference), refund_id and
        refunded_at_ms (once the reconciler refunded it), due_shard, due_at_ms (see below)

    Global secondary index `by-session-id` (partition key `session_id`, keys only), so a
    Stripe webhook that carries only the session id finds the item to update.

    Global secondary index `due-for-reconcile` (partition key `due_shard`, sort key
    `due_at_ms`; projects company_id, reference, session_id, stripe_account, state): how
    the reconciler finds its work without reading the table. It is sparse: only items
    that carry `due_shard` and `due_at_ms` are in it, and the writes that create or settle
    a record set or remove the pair in the same request, so the index holds
      - session items while they are open or settling, owe a booking event, or are a
        double payment whose refund is not settled;
      - head items while they hold pending attempts (set when the lease is taken, kept by
        a commit or release that keeps attempts, removed by one that keeps none).
    A registry of a million settled sessions therefore costs a pass what its few open
    records cost. `due_at_ms` is when the record last changed (for a head: when its lease
    runs out), or a later time the reconciler chose to look again; a pass asks for items
    whose `due_at_ms` is older than its grace period, oldest first. `due_shard` is one of
    `DUE_SHARDS` fixed values, from a hash of `pk`: one value would put every open
    checkout's index writes on one partition; a pass queries each shard.

    Records written before the index existed carry no marker and are not in it: the
    reconciler repairs such a reference only when asked by name (`checkout-admin reconcile
    --company-id ID --reference REF`); their sessions still expire at Stripe within 24 h
    and their webhooks still arrive.

GUIDs are written in their canonical lower-case dashed form, whatever spelling the
client sent, so one company has one key.
"""

from __future__ import annotations

import uuid
import zlib

from checkout.domain import ArticleKey, ReferenceKey

PK = "pk"
SK = "sk"
SESSION_ID_INDEX = "by-session-id"
SESSION_ID = "session_id"
DUE_INDEX = "due-for-reconcile"
DUE_SHARD = "due_shard"
DUE_AT = "due_at_ms"
DUE_SHARDS = 4

SETTINGS_SK = "SETTINGS"
ARTICLE_SK_PREFIX = "ARTICLE#"
HEAD_SK = "HEAD"
SESSION_SK_PREFIX = "SESSION#"


def company_pk(company_id: uuid.UUID) -> str:
    """Partition of a company's settings and catalogue."""
    return f"COMPANY#{company_id}"


def article_sk(key: ArticleKey) -> str:
    """Sort key of one catalogued article."""
    return f"{ARTICLE_SK_PREFIX}{key.article_type_id}#{key.article_id}"


def reference_pk(key: ReferenceKey) -> str:
    """Partition of one reference's head item and its sessions."""
    return f"REFERENCE#{key.company_id}#{key.reference}"


def session_sk(session_id: str) -> str:
    """Sort key of one session under its reference."""
    return f"{SESSION_SK_PREFIX}{session_id}"


def due_shard(pk: str) -> str:
    """The `due_shard` of every item under `pk`: stable, so a reference stays on one shard."""
    return f"DUE#{zlib.crc32(pk.encode()) % DUE_SHARDS}"


def all_due_shards() -> list[str]:
    """Every `due_shard` value, for a pass that reads the whole due index."""
    return [f"DUE#{n}" for n in range(DUE_SHARDS)]
