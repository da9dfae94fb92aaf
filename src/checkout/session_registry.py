"""The session registry in DynamoDB: every Checkout Session the service created, per reference.

Stripe cannot list Checkout Sessions by `client_reference_id` or metadata, so this table
is how the service knows which sessions of a reference to expire. Key layout:
`dynamodb_layout`.

Serialisation is by a lease on the reference's head item, taken with a conditional
write: a Lambda fleet shares nothing but the table, so an in-process lock would not do.
Every write made under the lease is conditioned on still holding it. The lease lasts
longer than the Lambda timeout (`CHECKOUT_LEASE_SECONDS`), so it can only be taken over
from an invocation that is no longer running; a crashed holder blocks the reference for
at most that long.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from checkout import dynamodb_layout as layout
from checkout.aws_clients import aws_errors, from_item, to_item
from checkout.domain import (
    CheckoutSession,
    PendingAttempt,
    ReferenceKey,
    ReferenceState,
    SessionRecord,
    SessionStatus,
)
from checkout.errors import CheckoutInProgress, LeaseLost

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SERVICE = "DynamoDB"
_LEASE_HELD_BY = "lease_owner = :owner"


class _AlreadyFinal(Exception):
    """The session was no longer open when its status was to be updated."""


def _attempt(raw: Any) -> PendingAttempt | None:
    if not isinstance(raw, dict):
        return None
    return PendingAttempt(
        idempotency_key=str(raw["idempotency_key"]),
        stripe_account=raw.get("stripe_account"),
        params_json=str(raw["params_json"]),
        started_at=int(Decimal(raw.get("started_at", 0))),
    )


class DynamoSessionRegistry:
    """Leases, pending attempts and session records of references."""

    def __init__(
        self, client: DynamoDBClient, table: str, lease_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table
        self._lease_seconds = lease_seconds
        self._clock = clock

    def _head_key(self, key: ReferenceKey) -> dict[str, Any]:
        return to_item({layout.PK: layout.reference_pk(key), layout.SK: layout.HEAD_SK})

    def _update_head(self, key: ReferenceKey, owner: str, expression: str, values: dict[str, Any]) -> None:
        with aws_errors(_SERVICE, on_condition_failed=LeaseLost):
            self._client.update_item(
                TableName=self._table,
                Key=self._head_key(key),
                UpdateExpression=expression,
                ConditionExpression=_LEASE_HELD_BY,
                ExpressionAttributeValues=to_item({":owner": owner, **values}),
            )

    def acquire(self, key: ReferenceKey, owner: str) -> ReferenceState:
        """Take the reference's lease and return its state; `CheckoutInProgress` when another holds it."""
        now = self._clock()
        now_ms = int(now * 1000)
        with aws_errors(_SERVICE, on_condition_failed=CheckoutInProgress):
            self._client.update_item(
                TableName=self._table,
                Key=self._head_key(key),
                UpdateExpression=(
                    "SET lease_owner = :owner, lease_expires_at_ms = :expires, company_id = :company, "
                    "#reference = :reference, updated_at = :now"
                ),
                ConditionExpression="attribute_not_exists(lease_owner) OR lease_expires_at_ms < :now_ms",
                ExpressionAttributeNames={"#reference": "reference"},
                ExpressionAttributeValues=to_item(
                    {
                        ":owner": owner,
                        ":expires": now_ms + self._lease_seconds * 1000,
                        ":company": str(key.company_id),
                        ":reference": key.reference,
                        ":now": int(now),
                        ":now_ms": now_ms,
                    }
                ),
            )
        return self.load(key)

    def release(self, key: ReferenceKey, owner: str) -> None:
        """Give the lease back; a lease already taken over is left alone."""
        with contextlib.suppress(LeaseLost):
            self._update_head(key, owner, "REMOVE lease_owner, lease_expires_at_ms", {})

    def load(self, key: ReferenceKey) -> ReferenceState:
        """The reference's head and sessions, read consistently."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": layout.reference_pk(key)}),
            "ConsistentRead": True,
        }
        with aws_errors(_SERVICE):
            while True:
                page = self._client.query(**query)
                items.extend(from_item(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        head: dict[str, Any] = {}
        sessions: list[SessionRecord] = []
        for item in items:
            if item[layout.SK] == layout.HEAD_SK:
                head = item
            elif str(item[layout.SK]).startswith(layout.SESSION_SK_PREFIX):
                sessions.append(
                    SessionRecord(
                        session_id=str(item[layout.SESSION_ID]),
                        status=SessionStatus(str(item["status"])),
                        stripe_account=item.get("stripe_account"),
                        created_at_ms=int(item.get("created_at_ms", 0)),
                        ui_mode=item.get("ui_mode"),
                        payment_status=item.get("payment_status"),
                        amount_total=item.get("amount_total"),
                        currency=item.get("currency"),
                    )
                )
        sessions.sort(key=lambda s: (s.created_at_ms, s.session_id))
        return ReferenceState(
            key=key,
            current_session_id=head.get("current_session_id"),
            completed_session_id=head.get("completed_session_id"),
            pending_attempt=_attempt(head.get("pending_attempt")),
            sessions=tuple(sessions),
        )

    def save_attempt(self, key: ReferenceKey, owner: str, attempt: PendingAttempt) -> None:
        """Remember a creation before calling Stripe, so it can be replayed if we die."""
        value = {
            "idempotency_key": attempt.idempotency_key,
            "stripe_account": attempt.stripe_account,
            "params_json": attempt.params_json,
            "started_at": attempt.started_at,
        }
        self._update_head(
            key,
            owner,
            "SET pending_attempt = :attempt",
            {":attempt": {k: v for k, v in value.items() if v is not None}},
        )

    def clear_attempt(self, key: ReferenceKey, owner: str) -> None:
        """Forget an attempt that Stripe refused outright (it created nothing)."""
        self._update_head(key, owner, "REMOVE pending_attempt", {})

    def _session_item(
        self, key: ReferenceKey, session: CheckoutSession, stripe_account: str | None, ui_mode: str
    ) -> dict[str, Any]:
        now = self._clock()
        return to_item(
            {
                layout.PK: layout.reference_pk(key),
                layout.SK: layout.session_sk(session.id),
                layout.SESSION_ID: session.id,
                "company_id": str(key.company_id),
                "reference": key.reference,
                "status": session.status.value,
                "payment_status": session.payment_status,
                "ui_mode": ui_mode,
                "stripe_account": stripe_account,
                "amount_total": session.amount_total,
                "currency": session.currency,
                "livemode": session.livemode,
                "created_at_ms": int(now * 1000),
                "updated_at": int(now),
            }
        )

    def record_session(
        self,
        key: ReferenceKey,
        owner: str,
        session: CheckoutSession,
        stripe_account: str | None,
        ui_mode: str,
        *,
        make_current: bool,
    ) -> None:
        """Record a session created from the pending attempt, in one transaction with
        clearing the attempt (and, for a new checkout, making it current).

        `LeaseLost` when the lease has passed on; nothing is written then.
        """
        expression = "REMOVE pending_attempt SET updated_at = :now"
        values: dict[str, Any] = {":owner": owner, ":now": int(self._clock())}
        if make_current:
            expression += ", current_session_id = :session"
            values[":session"] = session.id
        with aws_errors(_SERVICE, on_condition_failed=LeaseLost):
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._session_item(key, session, stripe_account, ui_mode),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._head_key(key),
                            "UpdateExpression": expression,
                            "ConditionExpression": _LEASE_HELD_BY,
                            "ExpressionAttributeValues": to_item(values),
                        }
                    },
                ]
            )

    def record_orphan(
        self, key: ReferenceKey, session: CheckoutSession, stripe_account: str | None, ui_mode: str
    ) -> None:
        """Record a session whose lease was lost, so it is never lost from the history."""
        with aws_errors(_SERVICE):
            self._client.put_item(
                TableName=self._table,
                Item=self._session_item(key, session, stripe_account, ui_mode),
            )

    def update_status(self, key: ReferenceKey, session: CheckoutSession) -> None:
        """Store a status learned from Stripe; a completed session also marks the reference paid.

        Only an open session changes: complete and expired are final at Stripe.
        """
        now = int(self._clock())
        session_update: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({layout.PK: layout.reference_pk(key), layout.SK: layout.session_sk(session.id)}),
            "UpdateExpression": "SET #status = :status, payment_status = :payment_status, updated_at = :now",
            "ConditionExpression": "#status = :open",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {
                    ":status": session.status.value,
                    ":payment_status": session.payment_status or "unpaid",
                    ":now": now,
                    ":open": SessionStatus.OPEN.value,
                }
            ),
        }
        items: list[Any] = [{"Update": session_update}]
        if session.status is SessionStatus.COMPLETE:
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._head_key(key),
                        "UpdateExpression": "SET completed_session_id = :session, updated_at = :now",
                        "ExpressionAttributeValues": to_item({":session": session.id, ":now": now}),
                    }
                }
            )
        # A session no longer open is final at Stripe: a webhook or an earlier request
        # got there first, and its word stands.
        with contextlib.suppress(_AlreadyFinal), aws_errors(_SERVICE, on_condition_failed=_AlreadyFinal):
            self._client.transact_write_items(TransactItems=items)
