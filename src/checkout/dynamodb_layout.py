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
        lease_owner, lease_expires_at_ms (epoch ms), pending_attempt (map), updated_at (epoch s)
    pk = REFERENCE#<company-guid>#<internal-reference-id>   sk = SESSION#<checkout-session-id>
        session_id, company_id, reference, status, payment_status, ui_mode, stripe_account,
        amount_total, currency, livemode, created_at_ms (epoch ms, orders the history), updated_at (epoch s)

    Global secondary index `by-session-id` (partition key `session_id`, keys only), so a
    Stripe webhook that carries only the session id finds the item to update.

GUIDs are written in their canonical lower-case dashed form, whatever spelling the
client sent, so one company has one key.
"""

from __future__ import annotations

import uuid

from checkout.domain import ArticleKey, ReferenceKey

PK = "pk"
SK = "sk"
SESSION_ID_INDEX = "by-session-id"
SESSION_ID = "session_id"

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
