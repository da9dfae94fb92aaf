"""The session registry in DynamoDB: every Checkout Session the service created, per reference.

Stripe cannot list Checkout Sessions by `client_reference_id` or metadata, so this table
is how the service knows which sessions of a reference are open. Key layout and
attributes: `dynamodb_layout`.

A checkout works on a reference as a unit of work, `with registry.reference(key,
attempt) as ref: ... ref.commit(...)`, which costs two DynamoDB round trips:

1. One conditional UpdateItem on the reference's head item takes the lease, appends the
   request's pending attempt and returns the head (ALL_NEW): the open sessions (kept on
   the head, so the history is never queried), the current one, and attempts left by
   requests that died. When the condition fails, `ReturnValuesOnConditionCheckFailure`
   tells "paid" and "settling" from "another request holds it" without another read.
2. One TransactWriteItems records the new session, the priors' new states and the
   current pointer, drops the resolved attempts and releases the lease, on condition
   that the lease is still ours.

A Lambda fleet shares nothing but the table, so an in-process lock would not do. The
lease is short (`CHECKOUT_LEASE_SECONDS`, 6 s by default) and a background thread of the
holding request renews it every third of that while the request works (Stripe's
retries may take half a minute), so a request that died, froze or could not reach
DynamoDB any more holds the reference for seconds, not for the whole Lambda timeout.
A holder whose lease lapsed anyway cannot commit (`LeaseLost`); the next holder replays
its attempt.

Lost answers and failures: the SDK retries a write whose answer was lost, and each write
recognises its own earlier success. The lease write's condition admits its own owner;
the commit writes its owner as `last_commit`, so a retried commit whose condition fails
on its own applied transaction is taken as done (DynamoDB's `ClientRequestToken` makes
the retry a no-op for ten minutes as well). A request that fails gives back what it
can: the lease (keeping the attempts for a replay), or, when the lease write itself
failed after it may have been applied, the lease and its own attempt, which never
reached Stripe. When DynamoDB cannot be reached at all, the lease lapses by itself.

The reconciler holds a reference the same way, without an attempt of its own
(`registry.reference(key)`), to finish attempts that dead requests left behind. Every
write here also keeps the item's place in the reconciler's due index (`due_shard`,
`due_at_ms`; see `dynamodb_layout`) in the same request, so the index cannot drift from
the records it points at.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from checkout import dynamodb_layout as layout
from checkout.aws_clients import aws_errors, from_item, to_item
from checkout.booking_events import OwedEvent
from checkout.domain import (
    CheckoutSession,
    DueRecord,
    OpenSession,
    PaymentState,
    PendingAttempt,
    ReferenceKey,
    ReferencePayment,
    ReferenceState,
    Refund,
    SessionRecord,
    SessionState,
    SessionStatus,
)
from checkout.errors import (
    AlreadyPaid,
    CheckoutError,
    CheckoutInProgress,
    LeaseLost,
    PaymentProcessing,
    UpstreamFailure,
)
from checkout.observability import logger
from checkout.reference_transitions import BookingEvent, Transition, event_detail, transition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SERVICE = "DynamoDB"
_CREATION_WINDOW_MS = 60_000
_APPLY_ATTEMPTS = 6  # optimistic retries when another writer changed the reference meanwhile
_UNSETTLED = {SessionState.OPEN, SessionState.PROCESSING}
_SETTLED_VALUES = {":paid": "paid", ":failed": "failed", ":expired": "expired"}


class _Conflict(Exception):
    """The reference or the session changed between reading and writing."""


def _attempts(raw: Any) -> tuple[PendingAttempt, ...]:
    found: dict[str, PendingAttempt] = {}
    for item in raw if isinstance(raw, list) else []:
        key = str(item.get("idempotency_key", ""))
        if key and key not in found:  # a retried lease write appends its attempt twice
            found[key] = PendingAttempt(key, str(item.get("spec", "")), int(item.get("started_at_ms", 0)))
    return tuple(found.values())


def _payment(head: dict[str, Any]) -> ReferencePayment:
    return ReferencePayment(
        state=PaymentState(head.get("payment_state", PaymentState.PAYABLE.value)),
        paid_session_id=head.get("paid_session_id"),
        processing_session_id=head.get("processing_session_id"),
        extra_paid_session_ids=tuple(head.get("extra_paid_session_ids", ())),
    )


def _open_sessions(head: dict[str, Any]) -> tuple[OpenSession, ...]:
    sessions = head.get("open_sessions") or {}
    return tuple(
        OpenSession(sid, (info or {}).get("stripe_account")) for sid, info in sorted(sessions.items())
    )


def refusal(head: dict[str, Any]) -> CheckoutError:
    """Why a lease could not be taken, from the head as it was."""
    state = head.get("payment_state")
    if state == PaymentState.PAID.value:
        return AlreadyPaid()
    if state == PaymentState.PROCESSING.value:
        return PaymentProcessing()
    return CheckoutInProgress()


@dataclass(frozen=True)
class SessionWrite:
    """A session to record (created now or recovered) or to update after Stripe expired it."""

    session: CheckoutSession
    stripe_account: str | None
    ui_mode: str | None = None
    created: bool = False
    created_at_ms: int | None = None  # when its attempt started; orders the history


@dataclass
class ReferenceLease:
    """A reference held by one request: what the head said when the lease was taken."""

    key: ReferenceKey
    owner: str
    attempt: PendingAttempt | None  # the holder's own; None when held only to finish others'
    current_session_id: str | None
    open_sessions: tuple[OpenSession, ...]
    stale_attempts: tuple[PendingAttempt, ...]
    recent_creations_ms: tuple[int, ...]
    _registry: DynamoSessionRegistry
    committed: bool = field(default=False, init=False)

    def creations_within(self, now_ms: int, window_ms: int = _CREATION_WINDOW_MS) -> list[int]:
        """When the reference's sessions of the last `window_ms` were created."""
        return [t for t in self.recent_creations_ms if t > now_ms - window_ms]

    def commit(
        self,
        sessions: Sequence[SessionWrite],
        *,
        current_session_id: str | None,
        open_sessions: Sequence[OpenSession],
        keep_attempts: Sequence[PendingAttempt] = (),
    ) -> None:
        """Record sessions, the current pointer and the open set, and release the lease.

        `keep_attempts` are attempts whose outcome is still unknown (Stripe timed out):
        they stay for the next request to replay. `LeaseLost` when the lease passed on;
        nothing is written then.
        """
        self._registry._commit(self, sessions, current_session_id, open_sessions, keep_attempts)
        self.committed = True

    def record_unleased(self, write: SessionWrite) -> None:
        """Record a session after the lease was lost, so it is never missing from the history."""
        self._registry._record_unleased(self.key, write)

    def release(self, keep_attempts: Sequence[PendingAttempt]) -> None:
        """Give the lease back without recording anything; keep unresolved attempts."""
        self._registry._release(self, keep_attempts)
        self.committed = True

    def renew(self) -> None:
        """Extend the lease by its full length from now; `LeaseLost` when it passed on."""
        self._registry._renew(self)


class _Renewal:
    """Renews a lease every `interval` seconds until stopped or lost, on its own thread,
    so the lease stays short and alive while the request waits for Stripe."""

    def __init__(self, lease: ReferenceLease, interval: float) -> None:
        self._lease = lease
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._lease.renew()
            except LeaseLost:
                return
            except UpstreamFailure:
                # The lease lapses unless a later renewal gets through; the commit will tell.
                logger.warning("Could not renew the reference's lease")

    def stop(self) -> None:
        """No more renewals; one under way finishes (its condition fails once released)."""
        self._stopped.set()


class DynamoSessionRegistry:
    """Leases, pending attempts and session records of references."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        *,
        renew_every: float | None = None,
    ) -> None:
        self._client = client
        self._table = table
        self._lease_ms = int(lease_seconds * 1000)
        self._clock = clock
        # A third of the lease: two renewals may fail before it lapses.
        self._renew_every = renew_every if renew_every is not None else lease_seconds / 3

    def _head_key(self, key: ReferenceKey) -> dict[str, Any]:
        return to_item({layout.PK: layout.reference_pk(key), layout.SK: layout.HEAD_SK})

    @contextmanager
    def reference(self, key: ReferenceKey, attempt: PendingAttempt | None = None) -> Iterator[ReferenceLease]:
        """Hold the reference for one checkout; see the module docstring.

        Raises `AlreadyPaid`, `PaymentProcessing` or `CheckoutInProgress` when it cannot
        be held. Leaving the block without `commit` releases the lease and keeps every
        pending attempt (the request's own included) for the next request to replay.

        Without `attempt` the reference is held only to finish the attempts dead requests
        left (the reconciler): whatever its payment state, since a session a dead request
        created must be recorded even after another one paid the reference, and only
        `CheckoutInProgress` refuses it.
        """
        owner = uuid.uuid4().hex
        try:
            lease = self._take(key, attempt, owner)
        except UpstreamFailure:
            self._abandon(key, owner, attempt)
            raise
        renewal = _Renewal(lease, self._renew_every)
        try:
            yield lease
        finally:
            renewal.stop()
            if not lease.committed:
                own = () if lease.attempt is None else (lease.attempt,)
                try:
                    self._release(lease, (*lease.stale_attempts, *own))
                except UpstreamFailure:
                    # The request's own failure is the answer; the lease lapses by itself.
                    logger.warning("Could not give the reference's lease back")

    def _take(self, key: ReferenceKey, attempt: PendingAttempt | None, owner: str) -> ReferenceLease:
        now_ms = int(self._clock() * 1000)
        expires_ms = now_ms + self._lease_ms

        def refused(exc: ClientError) -> Exception:
            if attempt is None:
                return CheckoutInProgress()
            return refusal(from_item(cast("dict[str, Any]", exc.response.get("Item") or {})))

        free = "(attribute_not_exists(lease_owner) OR lease_expires_at_ms < :now OR lease_owner = :owner)"
        condition = (
            f"{free} AND attribute_exists(pk)"
            if attempt is None
            else f"{free} AND (attribute_not_exists(payment_state) OR payment_state = :payable)"
        )
        values: dict[str, Any] = {
            ":owner": owner,
            ":expires": expires_ms,
            ":company": str(key.company_id),
            ":reference": key.reference,
            ":now": now_ms,
            ":none": [],
            ":attempt": [] if attempt is None else [_attempt_item(attempt)],
            ":shard": layout.due_shard(layout.reference_pk(key)),
            ":one": 1,
        }
        if attempt is not None:
            values[":payable"] = PaymentState.PAYABLE.value
        with aws_errors(_SERVICE, on_condition_failed=refused):
            response = self._client.update_item(
                TableName=self._table,
                Key=self._head_key(key),
                # The head joins the due index until the attempts are resolved: if this
                # request dies, the reconciler finds them once the lease has run out.
                UpdateExpression=(
                    "SET lease_owner = :owner, lease_expires_at_ms = :expires, company_id = :company, "
                    "#reference = :reference, updated_at_ms = :now, "
                    "attempts = list_append(if_not_exists(attempts, :none), :attempt), "
                    f"{layout.DUE_SHARD} = :shard, {layout.DUE_AT} = :expires ADD version :one"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#reference": "reference"},
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        head = from_item(response.get("Attributes", {}))
        own_key = None if attempt is None else attempt.idempotency_key
        stale = tuple(a for a in _attempts(head.get("attempts")) if a.idempotency_key != own_key)
        return ReferenceLease(
            key=key,
            owner=owner,
            attempt=attempt,
            current_session_id=head.get("current_session_id"),
            open_sessions=_open_sessions(head),
            stale_attempts=stale,
            recent_creations_ms=tuple(int(t) for t in head.get("recent_creations_ms", ())),
            _registry=self,
        )

    def _abandon(self, key: ReferenceKey, owner: str, attempt: PendingAttempt | None) -> None:
        """After a lease write that failed but may have been applied (its answer lost on
        every try): give the lease back and drop our attempt, which never reached Stripe.
        Best effort: when DynamoDB is still failing, the lease lapses by itself."""
        try:
            with aws_errors(_SERVICE, on_condition_failed=lambda _: LeaseLost()):
                head = from_item(
                    self._client.get_item(
                        TableName=self._table, Key=self._head_key(key), ConsistentRead=True
                    ).get("Item", {})
                )
                if head.get("lease_owner") != owner:
                    return
                mine = None if attempt is None else attempt.idempotency_key
                keep = [a for a in _attempts(head.get("attempts")) if a.idempotency_key != mine]
                now_ms = int(self._clock() * 1000)
                sets, removes, values = self._head_due(key, keep, now_ms)
                self._client.update_item(
                    TableName=self._table,
                    Key=self._head_key(key),
                    UpdateExpression=(
                        "SET "
                        + ", ".join(["attempts = :attempts", "updated_at_ms = :now", *sets])
                        + " REMOVE "
                        + ", ".join(["lease_owner", "lease_expires_at_ms", *removes])
                        + " ADD version :one"
                    ),
                    ConditionExpression="lease_owner = :owner AND version = :version",
                    ExpressionAttributeValues=to_item(
                        {
                            ":owner": owner,
                            ":version": head.get("version", 0),
                            ":attempts": [_attempt_item(a) for a in keep],
                            ":now": now_ms,
                            ":one": 1,
                            **values,
                        }
                    ),
                )
        except (UpstreamFailure, LeaseLost):
            logger.warning("Could not give back a lease whose write failed")

    def _renew(self, lease: ReferenceLease) -> None:
        # The head stays due when the lease runs out, so the reconciler looks again then.
        with aws_errors(_SERVICE, on_condition_failed=lambda _: LeaseLost()):
            self._client.update_item(
                TableName=self._table,
                Key=self._head_key(lease.key),
                UpdateExpression=f"SET lease_expires_at_ms = :expires, {layout.DUE_AT} = :expires",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues=to_item(
                    {":owner": lease.owner, ":expires": int(self._clock() * 1000) + self._lease_ms}
                ),
            )

    def _release(self, lease: ReferenceLease, keep_attempts: Sequence[PendingAttempt]) -> None:
        now_ms = int(self._clock() * 1000)
        sets, removes, values = self._head_due(lease.key, keep_attempts, now_ms)
        try:
            with aws_errors(_SERVICE, on_condition_failed=lambda _: LeaseLost()):
                self._client.update_item(
                    TableName=self._table,
                    Key=self._head_key(lease.key),
                    UpdateExpression=(
                        "SET "
                        + ", ".join(["attempts = :attempts", "updated_at_ms = :now", *sets])
                        + " REMOVE "
                        + ", ".join(["lease_owner", "lease_expires_at_ms", *removes])
                        + " ADD version :one"
                    ),
                    ConditionExpression="lease_owner = :owner",
                    ExpressionAttributeValues=to_item(
                        {
                            ":owner": lease.owner,
                            ":attempts": [_attempt_item(a) for a in keep_attempts],
                            ":now": now_ms,
                            ":one": 1,
                            **values,
                        }
                    ),
                )
        except LeaseLost:
            pass  # another request holds the reference now; it has our attempts too

    @staticmethod
    def _head_due(
        key: ReferenceKey, keep_attempts: Sequence[PendingAttempt], now_ms: int
    ) -> tuple[list[str], list[str], dict[str, Any]]:
        """The head's place in the due index as the lease is given back: there while it
        keeps attempts (for the reconciler to finish), gone once none are left."""
        if keep_attempts:
            shard = layout.due_shard(layout.reference_pk(key))
            return [f"{layout.DUE_SHARD} = :shard", f"{layout.DUE_AT} = :now"], [], {":shard": shard}
        return [], [layout.DUE_SHARD, layout.DUE_AT], {}

    def _commit(
        self,
        lease: ReferenceLease,
        sessions: Sequence[SessionWrite],
        current_session_id: str | None,
        open_sessions: Sequence[OpenSession],
        keep_attempts: Sequence[PendingAttempt],
    ) -> None:
        now_ms = int(self._clock() * 1000)
        items: list[Any] = [self._session_write(lease.key, w, now_ms) for w in sessions]
        created = [now_ms for w in sessions if w.created and w.session.id == current_session_id]
        recent = [*lease.creations_within(now_ms), *created]
        due_sets, due_removes, due_values = self._head_due(lease.key, keep_attempts, now_ms)
        values: dict[str, Any] = {
            ":owner": lease.owner,
            ":commit": lease.owner,
            ":open": {s.session_id: to_open_info(s) for s in open_sessions},
            ":attempts": [_attempt_item(a) for a in keep_attempts],
            ":recent": recent,
            ":now": now_ms,
            ":one": 1,
            **due_values,
        }
        sets = [
            "open_sessions = :open",
            "attempts = :attempts",
            "recent_creations_ms = :recent",
            "updated_at_ms = :now",
            "last_commit = :commit",
            *due_sets,
        ]
        if current_session_id is not None:
            sets.append("current_session_id = :current")
            values[":current"] = current_session_id
        removes = ["lease_owner", "lease_expires_at_ms", *due_removes]
        items.append(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": self._head_key(lease.key),
                    "UpdateExpression": "SET "
                    + ", ".join(sets)
                    + " REMOVE "
                    + ", ".join(removes)
                    + " ADD version :one",
                    "ConditionExpression": "lease_owner = :owner",
                    "ExpressionAttributeValues": to_item(values),
                }
            }
        )
        try:
            with aws_errors(_SERVICE, on_condition_failed=lambda _: LeaseLost()):
                self._client.transact_write_items(TransactItems=items, ClientRequestToken=lease.owner)
        except LeaseLost:
            if not self._committed_by(lease):
                raise
        except UpstreamFailure:
            # Every try timed out or failed, and one of them may still have been applied.
            try:
                committed = self._committed_by(lease)
            except UpstreamFailure:
                committed = False
            if not committed:
                raise

    def _committed_by(self, lease: ReferenceLease) -> bool:
        """Whether the head says this lease's commit was applied: the retry of a commit
        whose answer was lost fails its condition on the commit itself."""
        with aws_errors(_SERVICE):
            head = self._client.get_item(
                TableName=self._table,
                Key=self._head_key(lease.key),
                ConsistentRead=True,
                ProjectionExpression="last_commit",
            ).get("Item", {})
        return from_item(head).get("last_commit") == lease.owner

    def _record_unleased(self, key: ReferenceKey, write: SessionWrite) -> None:
        put = self._session_write(key, write, int(self._clock() * 1000))["Put"]
        with aws_errors(_SERVICE):
            self._client.put_item(**put)

    def _session_write(self, key: ReferenceKey, write: SessionWrite, now_ms: int) -> dict[str, Any]:
        session = write.session
        state = session.state
        pk = layout.reference_pk(key)
        # An open or settling session is in the due index, so the reconciler asks Stripe
        # about it if no news comes; Stripe's final word takes it out in the same write.
        unsettled = state in _UNSETTLED
        attributes: dict[str, Any] = {
            "status": session.status.value,
            "state": state.value,
            "payment_status": session.payment_status,
            "payment_intent_id": session.payment_intent_id,
            "customer_email": session.customer_email,
            "updated_at_ms": now_ms,
            layout.DUE_SHARD: layout.due_shard(pk) if unsettled else None,
            layout.DUE_AT: now_ms if unsettled else None,
        }
        if write.created:
            item = {
                layout.PK: layout.reference_pk(key),
                layout.SK: layout.session_sk(session.id),
                layout.SESSION_ID: session.id,
                "company_id": str(key.company_id),
                "reference": key.reference,
                "ui_mode": write.ui_mode,
                "stripe_account": write.stripe_account,
                "amount_total": session.amount_total,
                "currency": session.currency,
                "livemode": session.livemode,
                "created_at_ms": write.created_at_ms or now_ms,
                **attributes,
            }
            return {"Put": {"TableName": self._table, "Item": to_item(item)}}
        # Stripe's word on a session it just expired or completed is final: no condition.
        present = {k: v for k, v in attributes.items() if v is not None}
        names = {f"#a{i}": name for i, name in enumerate(present)}
        expression = "SET " + ", ".join(f"{n} = :v{i}" for i, n in enumerate(names))
        if not unsettled:
            expression += f" REMOVE {layout.DUE_SHARD}, {layout.DUE_AT}"
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_item({layout.PK: pk, layout.SK: layout.session_sk(session.id)}),
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item({f":v{i}": v for i, v in enumerate(present.values())}),
            }
        }

    def apply_news(self, key: ReferenceKey, session: CheckoutSession) -> Transition | None:
        """Record what Stripe says of a session now, through the one transition function.

        Reads the reference's head and the session's record, asks `transition` what
        changes, and writes the session's new state, the reference's payment state, its
        open set and the booking events owed (the outbox) in one transaction, on
        condition that neither changed meanwhile (else it reads again). None when the
        session is not one this service recorded for `key`.
        """
        for _ in range(_APPLY_ATTEMPTS):
            head, item = self._read_pair(key, session.id)
            if item is None:
                return None
            payment = _payment(head)
            recorded = SessionState(str(item.get("state", SessionState.OPEN.value)))
            result = transition(
                payment,
                head.get("current_session_id"),
                session.id,
                recorded,
                session.state,
                replacing_current=_checkout_in_progress(head, int(self._clock() * 1000)),
            )
            if not result.changed:
                return result
            try:
                self._write_news(key, session, head, recorded, result)
            except _Conflict:
                continue
            return result
        raise UpstreamFailure(
            "AwsUnavailable", "The reference is changing too often to record; please retry."
        )

    def _read_pair(self, key: ReferenceKey, session_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        pk = layout.reference_pk(key)
        with aws_errors(_SERVICE):
            response = self._client.transact_get_items(
                TransactItems=[
                    {"Get": {"TableName": self._table, "Key": to_item({layout.PK: pk, layout.SK: sk})}}
                    for sk in (layout.HEAD_SK, layout.session_sk(session_id))
                ]
            )
        head, item = (from_item(r.get("Item") or {}) for r in response["Responses"])
        return head, (item or None)

    def _write_news(
        self,
        key: ReferenceKey,
        session: CheckoutSession,
        head: dict[str, Any],
        recorded: SessionState,
        result: Transition,
    ) -> None:
        now_ms = int(self._clock() * 1000)
        payment = result.payment
        open_map = dict(head.get("open_sessions") or {})
        if result.session_state is not SessionState.OPEN:
            open_map.pop(session.id, None)
        outbox = dict(head.get("outbox") or {})
        for event in result.events:
            outbox[f"{event.value}#{session.id}"] = {
                "detail_type": event.value,
                "detail": event_detail(event, key, session, payment),
                "owed_at_ms": now_ms,
            }
        head_values: dict[str, Any] = {
            ":state": payment.state.value,
            ":open": open_map,
            ":outbox": outbox,
            ":extra": list(payment.extra_paid_session_ids),
            ":now": now_ms,
            ":one": 1,
        }
        sets = [
            "payment_state = :state",
            "open_sessions = :open",
            "outbox = :outbox",
            "extra_paid_session_ids = :extra",
            "updated_at_ms = :now",
        ]
        removes = []
        for name, value in (
            ("paid_session_id", payment.paid_session_id),
            ("processing_session_id", payment.processing_session_id),
        ):
            if value is None:
                removes.append(name)
            else:
                sets.append(f"{name} = :{name}")
                head_values[f":{name}"] = value
        if "version" in head:
            head_condition = "version = :version"
            head_values[":version"] = head["version"]
        else:
            head_condition = "attribute_not_exists(version)"
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        session_values = {
            ":state": result.session_state.value,
            ":recorded": recorded.value,
            ":status": session.status.value,
            ":now": now_ms,
            ":payment_status": session.payment_status,
            ":payment_intent_id": session.payment_intent_id,
            ":customer_email": session.customer_email,
        }
        session_sets = ["#state = :state", "#status = :status", "updated_at_ms = :now"] + [
            f"{name[1:]} = {name}"
            for name, value in session_values.items()
            if name in {":payment_status", ":payment_intent_id", ":customer_email"} and value is not None
        ]
        pk = layout.reference_pk(key)
        # The session stays in the due index while it is unsettled or owes events (the
        # relay takes it out once they are published); a double payment stays until the
        # reconciler has settled its refund.
        if result.session_state in _UNSETTLED or result.events:
            session_sets += [f"{layout.DUE_SHARD} = :shard", f"{layout.DUE_AT} = :now"]
            session_values[":shard"] = layout.due_shard(pk)
            session_removes = ""
        else:
            session_removes = f" REMOVE {layout.DUE_SHARD}, {layout.DUE_AT}"
        if BookingEvent.DOUBLE_PAYMENT in result.events:
            session_sets.append("double_payment = :double")
            session_values[":double"] = True
        items: list[Any] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": to_item({layout.PK: pk, layout.SK: layout.session_sk(session.id)}),
                    "UpdateExpression": "SET " + ", ".join(session_sets) + session_removes,
                    "ConditionExpression": "#state = :recorded OR attribute_not_exists(#state)",
                    "ExpressionAttributeNames": {"#state": "state", "#status": "status"},
                    "ExpressionAttributeValues": to_item(session_values),
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": self._head_key(key),
                    "UpdateExpression": expression + " ADD version :one",
                    "ConditionExpression": head_condition,
                    "ExpressionAttributeValues": to_item(head_values),
                }
            },
        ]
        with aws_errors(_SERVICE, on_condition_failed=lambda _: _Conflict()):
            self._client.transact_write_items(TransactItems=items)

    def owed_events(self, key: ReferenceKey) -> list[OwedEvent]:
        """The booking events the reference owes (its outbox), read consistently."""
        with aws_errors(_SERVICE):
            response = self._client.get_item(
                TableName=self._table,
                Key=self._head_key(key),
                ProjectionExpression="outbox",
                ConsistentRead=True,
            )
        outbox = from_item(response.get("Item") or {}).get("outbox") or {}
        return [
            OwedEvent(
                event_id, str(entry["detail_type"]), dict(entry["detail"]), int(entry.get("owed_at_ms", 0))
            )
            for event_id, entry in outbox.items()
        ]

    def settle_owed(self, key: ReferenceKey, event_ids: Sequence[str]) -> None:
        """Drop published events from the outbox (dropping one already gone is harmless).

        The sessions they were about then leave the due index, unless a session is still
        unsettled, or is a double payment whose refund is not yet published: the
        reconciler settles that.
        """
        if not event_ids:
            return
        names = {f"#e{i}": event_id for i, event_id in enumerate(event_ids)}
        with contextlib.suppress(_Conflict), aws_errors(_SERVICE, on_condition_failed=lambda _: _Conflict()):
            self._client.update_item(
                TableName=self._table,
                Key=self._head_key(key),
                UpdateExpression="REMOVE " + ", ".join(f"outbox.{n}" for n in names) + " ADD version :one",
                ConditionExpression="attribute_exists(outbox)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({":one": 1}),
            )
        for session_id in dict.fromkeys(owed_session_id(e) for e in event_ids):
            refund_published = f"{BookingEvent.REFUNDED.value}#{session_id}" in event_ids
            self._leave_due(key, session_id, double_payment_settled=refund_published)

    def finished(self, key: ReferenceKey, session_id: str) -> None:
        """The reconciler is done with a settled session: it leaves the due index.

        Only a settled one (paid, failed, expired) does; the caller has published what it
        owed and settled its refund, if any.
        """
        self._leave_due(key, session_id, double_payment_settled=True)

    def _leave_due(self, key: ReferenceKey, session_id: str, *, double_payment_settled: bool) -> None:
        condition = f"attribute_exists({layout.DUE_AT}) AND #state IN (:paid, :failed, :expired)"
        if not double_payment_settled:
            condition += " AND attribute_not_exists(double_payment)"
        with contextlib.suppress(_Conflict), aws_errors(_SERVICE, on_condition_failed=lambda _: _Conflict()):
            self._client.update_item(
                TableName=self._table,
                Key=self._session_key(key, session_id),
                UpdateExpression=f"REMOVE {layout.DUE_SHARD}, {layout.DUE_AT}",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=to_item(_SETTLED_VALUES),
            )

    def look_again(self, key: ReferenceKey, session_id: str | None, at_ms: int) -> None:
        """Move a record that is still in the due index (a session, or with None the head)
        to `at_ms`: the reconciler looks at it again once that is past its grace period."""
        item_key = self._head_key(key) if session_id is None else self._session_key(key, session_id)
        with contextlib.suppress(_Conflict), aws_errors(_SERVICE, on_condition_failed=lambda _: _Conflict()):
            self._client.update_item(
                TableName=self._table,
                Key=item_key,
                UpdateExpression=f"SET {layout.DUE_AT} = :at",
                ConditionExpression=f"attribute_exists({layout.DUE_AT})",
                ExpressionAttributeValues=to_item({":at": at_ms}),
            )

    def record_refund(self, key: ReferenceKey, session_id: str, refund: Refund) -> bool:
        """Record the refund of a double payment and owe "Checkout Refunded", in one write.

        The refund id on the session item is what keeps the reconciler from ever
        refunding it again. False when a refund is already recorded for the session (or
        it is not one this service recorded); nothing is written then.
        """
        for _ in range(_APPLY_ATTEMPTS):
            head, item = self._read_pair(key, session_id)
            if item is None or item.get("refund_id"):
                return False
            now_ms = int(self._clock() * 1000)
            record = session_record(item)
            event = BookingEvent.REFUNDED
            outbox = dict(head.get("outbox") or {})
            outbox[f"{event.value}#{session_id}"] = {
                "detail_type": event.value,
                "detail": event_detail(event, key, record_session(record), _payment(head), refund),
                "owed_at_ms": now_ms,
            }
            pk = layout.reference_pk(key)
            head_values: dict[str, Any] = {":outbox": outbox, ":now": now_ms, ":one": 1}
            if "version" in head:
                head_condition = "version = :version"
                head_values[":version"] = head["version"]
            else:
                head_condition = "attribute_not_exists(version)"
            items: list[Any] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._session_key(key, session_id),
                        "UpdateExpression": (
                            f"SET refund_id = :refund, refunded_at_ms = :now, {layout.DUE_SHARD} = :shard, "
                            f"{layout.DUE_AT} = :now, updated_at_ms = :now"
                        ),
                        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(refund_id)",
                        "ExpressionAttributeValues": to_item(
                            {":refund": refund.id, ":now": now_ms, ":shard": layout.due_shard(pk)}
                        ),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._head_key(key),
                        "UpdateExpression": "SET outbox = :outbox, updated_at_ms = :now ADD version :one",
                        "ConditionExpression": head_condition,
                        "ExpressionAttributeValues": to_item(head_values),
                    }
                },
            ]
            try:
                with aws_errors(_SERVICE, on_condition_failed=lambda _: _Conflict()):
                    self._client.transact_write_items(TransactItems=items)
            except _Conflict:
                continue  # the reference changed meanwhile, or the refund was just recorded
            return True
        raise UpstreamFailure(
            "AwsUnavailable", "The reference is changing too often to record; please retry."
        )

    def due(self, before_ms: int | None = None, company_id: uuid.UUID | None = None) -> Iterator[DueRecord]:
        """The due index, oldest first: records due at or before `before_ms` (None: all),
        of one company or of all. Read lazily, a page at a time per shard."""
        shards = [self._due_shard(shard, before_ms, company_id) for shard in layout.all_due_shards()]
        return heapq.merge(*shards, key=lambda record: record.due_at_ms)

    def _due_shard(
        self, shard: str, before_ms: int | None, company_id: uuid.UUID | None
    ) -> Iterator[DueRecord]:
        values: dict[str, Any] = {":shard": shard}
        condition = f"{layout.DUE_SHARD} = :shard"
        if before_ms is not None:
            condition += f" AND {layout.DUE_AT} <= :before"
            values[":before"] = before_ms
        options: dict[str, Any] = {}
        if company_id is not None:
            options["FilterExpression"] = "company_id = :company"
            values[":company"] = str(company_id)
        while True:
            with aws_errors(_SERVICE):
                page = self._client.query(
                    TableName=self._table,
                    IndexName=layout.DUE_INDEX,
                    KeyConditionExpression=condition,
                    ExpressionAttributeValues=to_item(values),
                    **options,
                )
            for raw in page.get("Items", []):
                item = from_item(raw)
                state = item.get("state")
                yield DueRecord(
                    key=ReferenceKey(uuid.UUID(str(item["company_id"])), str(item["reference"])),
                    due_at_ms=int(item[layout.DUE_AT]),
                    session_id=item.get(layout.SESSION_ID),
                    state=SessionState(str(state)) if state else None,
                    stripe_account=item.get("stripe_account"),
                )
            if "LastEvaluatedKey" not in page:
                return
            options["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _session_key(self, key: ReferenceKey, session_id: str) -> dict[str, Any]:
        return to_item({layout.PK: layout.reference_pk(key), layout.SK: layout.session_sk(session_id)})

    def find_session(self, session_id: str) -> tuple[ReferenceKey, SessionRecord] | None:
        """The reference and record of a session this service created, by its id alone."""
        with aws_errors(_SERVICE):
            found = self._client.query(
                TableName=self._table,
                IndexName=layout.SESSION_ID_INDEX,
                KeyConditionExpression="session_id = :id",
                ExpressionAttributeValues=to_item({":id": session_id}),
                Limit=1,
            ).get("Items", [])
            if not found:
                return None
            keys = from_item(found[0])
            response = self._client.get_item(
                TableName=self._table,
                Key=to_item({layout.PK: keys[layout.PK], layout.SK: keys[layout.SK]}),
                ConsistentRead=True,
            )
        item = from_item(response.get("Item") or {})
        if not item:
            return None
        key = ReferenceKey(uuid.UUID(str(item["company_id"])), str(item["reference"]))
        return key, session_record(item)

    def load(self, key: ReferenceKey) -> ReferenceState:
        """The reference's head and sessions, read consistently (operators, tests)."""
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
                sessions.append(session_record(item))
        sessions.sort(key=lambda s: (s.created_at_ms, s.session_id))
        return ReferenceState(
            key=key,
            payment=_payment(head),
            current_session_id=head.get("current_session_id"),
            open_sessions=_open_sessions(head),
            pending_attempts=_attempts(head.get("attempts")),
            lease_held=int(head.get("lease_expires_at_ms", 0)) >= int(self._clock() * 1000)
            and "lease_owner" in head,
            sessions=tuple(sessions),
            owed_events=tuple(sorted(head.get("outbox") or {})),
        )


def _checkout_in_progress(head: dict[str, Any], now_ms: int) -> bool:
    """A checkout holds the reference: a live lease with its pending attempt.

    (The reconciler's lease appends no attempt: what it learns is news.)
    """
    return (
        bool(head.get("lease_owner"))
        and int(head.get("lease_expires_at_ms", 0)) >= now_ms
        and bool(head.get("attempts"))
    )


def to_open_info(session: OpenSession) -> dict[str, Any]:
    """What the head keeps of an open session."""
    return {"stripe_account": session.stripe_account} if session.stripe_account else {}


def session_record(item: dict[str, Any]) -> SessionRecord:
    """A stored session item as the domain sees it."""
    return SessionRecord(
        session_id=str(item[layout.SESSION_ID]),
        status=SessionStatus(str(item.get("status", SessionStatus.OPEN.value))),
        state=SessionState(str(item.get("state", "open"))),
        stripe_account=item.get("stripe_account"),
        created_at_ms=int(item.get("created_at_ms", 0)),
        ui_mode=item.get("ui_mode"),
        payment_status=item.get("payment_status"),
        amount_total=item.get("amount_total"),
        currency=item.get("currency"),
        payment_intent_id=item.get("payment_intent_id"),
        customer_email=item.get("customer_email"),
        livemode=bool(item.get("livemode", False)),
        refund_id=item.get("refund_id"),
        due=layout.DUE_AT in item,
    )


def record_session(record: SessionRecord) -> CheckoutSession:
    """What a booking event says of a recorded session (its Stripe fields as last recorded)."""
    return CheckoutSession(
        id=record.session_id,
        status=record.status,
        customer_email=record.customer_email,
        payment_intent_id=record.payment_intent_id,
        payment_status=record.payment_status,
        amount_total=record.amount_total,
        currency=record.currency,
        livemode=record.livemode,
    )


def owed_session_id(event_id: str) -> str:
    """The session an outbox entry is about (its id is `<detail-type>#<session-id>`)."""
    return event_id.rpartition("#")[2]


def _attempt_item(attempt: PendingAttempt) -> dict[str, Any]:
    return {
        "idempotency_key": attempt.idempotency_key,
        "spec": attempt.spec_json,
        "started_at_ms": attempt.started_at_ms,
    }
