"""Booking events: telling the booking system that a reference was paid, failed or lapsed.

The transition function decides which events are owed; the registry records them in the
same write as the transition (an outbox on the reference's head item), so a function
that dies after the write still owes them. `OutboxRelay.relay` publishes what a
reference owes to the EventBridge bus and only then removes it from the outbox. Every
path that records news (checkout, status, webhook, reconciler) relays afterwards, so an
event owed by a dead invocation goes out with the next piece of news, the next
redelivery of Stripe's event, or the reconciler's next pass.

Publishing is at least once (a crash between PutEvents and the outbox update sends the
event again later); each event carries `EventId`, stable per event and session, for
consumers to drop duplicates. The events: `source` `stripe-checkout`, `detail-type` one
of `reference_transitions.BookingEvent`, `detail` as `reference_transitions.event_detail`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from checkout.aws_clients import aws_errors
from checkout.domain import ReferenceKey
from checkout.errors import UpstreamFailure
from checkout.observability import count, logger
from checkout.reference_transitions import BookingEvent

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "stripe-checkout"
_PUT_EVENTS_LIMIT = 10  # entries per PutEvents call


@dataclass(frozen=True)
class OwedEvent:
    """A booking event recorded as owed and not yet published."""

    event_id: str
    detail_type: str
    detail: dict[str, Any]
    owed_at_ms: int = 0


class Outbox(Protocol):
    """The registry, as the relay uses it."""

    def owed_events(self, key: ReferenceKey) -> list[OwedEvent]: ...

    def settle_owed(self, key: ReferenceKey, event_ids: Sequence[str]) -> None: ...


class EventPublisher(Protocol):
    """Where booking events go."""

    def publish(self, events: Sequence[OwedEvent]) -> None: ...


class EventBridgePublisher:
    """Publishes booking events to one EventBridge bus.

    The client is built on the first publish: most requests owe no event, and building
    it at import would lengthen every cold start for them.
    """

    def __init__(self, client: Callable[[], EventBridgeClient], bus_name: str) -> None:
        self._make_client = client
        self._client: EventBridgeClient | None = None
        self._bus_name = bus_name

    def publish(self, events: Sequence[OwedEvent]) -> None:
        """Put every event on the bus; `UpstreamFailure` if any entry was not accepted."""
        for start in range(0, len(events), _PUT_EVENTS_LIMIT):
            batch = events[start : start + _PUT_EVENTS_LIMIT]
            if self._client is None:
                self._client = self._make_client()
            with aws_errors("EventBridge"):
                answer = self._client.put_events(
                    Entries=[
                        {
                            "Source": SOURCE,
                            "DetailType": event.detail_type,
                            "Detail": json.dumps({**event.detail, "EventId": event.event_id}),
                            "EventBusName": self._bus_name,
                        }
                        for event in batch
                    ]
                )
            if answer.get("FailedEntryCount"):
                raise UpstreamFailure(
                    "AwsUnavailable", "EventBridge did not accept every event; please retry."
                )


class OutboxRelay:
    """Publishes the booking events a reference owes, then marks them published."""

    def __init__(self, outbox: Outbox, publisher: EventPublisher) -> None:
        self._outbox = outbox
        self._publisher = publisher

    def relay(self, key: ReferenceKey) -> int:
        """Publish what `key` owes; the number published."""
        owed = sorted(self._outbox.owed_events(key), key=lambda e: (e.owed_at_ms, e.event_id))
        if not owed:
            return 0
        self._publisher.publish(owed)
        self._outbox.settle_owed(key, [e.event_id for e in owed])
        count("BookingEventsPublished", len(owed))
        logger.info("Booking events published", extra={"events": [e.event_id for e in owed]})
        doubles = [e for e in owed if e.detail_type == BookingEvent.DOUBLE_PAYMENT.value]
        if doubles:
            # Counted where every path's news reaches the booking system; a payer was charged
            # twice, so the metric has an alarm (template.yaml: DoublePaymentsAlarm).
            count("DoublePayments", len(doubles))
            logger.error(
                "A reference was paid twice",
                extra={"reference": key.reference, "sessions": [e.detail.get("SessionId") for e in doubles]},
            )
        return len(owed)
