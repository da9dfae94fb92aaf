"""The Stripe emulator's Events and webhook endpoints, and what each delivery still owes.

Every change the emulator makes to a session (or a charge) is an Event, shaped as Stripe
shapes it and listed by /v1/events. When it happens, it is owed to every enabled
webhook endpoint that subscribes to its type and hears its account:

- an endpoint made with a `Stripe-Account` header hears that connected account;
- a platform endpoint with `connect=true` hears every connected account (the event then
  carries `account`);
- a platform endpoint without it hears the platform.

An event stays owed to an endpoint (`pending_webhooks`, `delivery_success=false`) until
one delivery to it is answered with a 2xx. The Courier (emulator_webhooks) does the
sending and the retrying.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from localdev.emulator_webhooks import DEFAULT_RETRY_DELAYS, Courier, Envelope, Outcome
from localdev.emulator_wire import (
    API_VERSION,
    ApiCall,
    boolean,
    check_metadata,
    created_filter,
    expand_paths,
    invalid,
    list_page,
    missing,
    new_id,
    only,
    text,
    url,
)

PAGE_PARAMS = {"limit", "starting_after", "ending_before", "expand"}
# Event types an endpoint may subscribe to. Stripe has hundreds; these are the ones a
# checkout service could plausibly ask for, and an unknown name is a 400 as with Stripe.
EVENT_TYPES = {
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "charge.refunded",
    "charge.succeeded",
    "charge.failed",
    "charge.refund.updated",
    "charge.dispute.created",
    "payment_intent.created",
    "payment_intent.processing",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "account.updated",
    "account.application.deauthorized",
}
MAX_TYPES_FILTER = 20


@dataclass
class _Event:
    body: dict[str, Any]  # the public Event but for `pending_webhooks`
    account: str  # "" for the platform
    targets: list[str]  # the endpoints subscribed when it happened
    pending: set[str]  # those still owed a 2xx
    withheld: bool  # made with deliver=False, and no delivery has succeeded yet
    attempts: dict[str, int] = field(default_factory=dict)

    def shown(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.body), "pending_webhooks": len(self.pending)}

    @property
    def undelivered(self) -> bool:
        # A withheld event counts as undelivered even with no endpoint to owe it to, so a
        # reconciler test need not set up an endpoint to have a lost webhook.
        return bool(self.pending) or self.withheld


@dataclass
class _Endpoint:
    body: dict[str, Any]  # the public webhook endpoint object, without its secret
    account: str
    connect: bool
    secret: str

    def hears(self, account: str) -> bool:
        """Whether events of `account` ("" for the platform) come here."""
        if not account:
            return self.account == "" and not self.connect
        return self.account == account or (self.account == "" and self.connect)

    def subscribes(self, event_type: str) -> bool:
        enabled = self.body["enabled_events"]
        return self.body["status"] == "enabled" and ("*" in enabled or event_type in enabled)


class Events:
    """Events, webhook endpoints and deliveries, guarded by the emulator's lock."""

    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        delivery_timeout: float = 5.0,
    ) -> None:
        self._lock = lock
        self._clock = clock
        self.courier = Courier(
            self._envelope, self._record, retry_delays=retry_delays, timeout=delivery_timeout
        )
        self._events: dict[str, _Event] = {}  # in the order they happened
        self._endpoints: dict[str, _Endpoint] = {}
        self._deliveries: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget every event, endpoint and delivery, and whatever the courier still holds."""
        with self._lock:
            self._events.clear()
            self._endpoints.clear()
            self._deliveries.clear()
            self.courier.clear()

    def emit(
        self,
        event_type: str,
        data_object: dict[str, Any],
        account: str,
        *,
        deliver: bool = True,
        request: dict[str, str | None] | None = None,
    ) -> None:
        """Record an event about `data_object` as it is now and queue it for its endpoints.

        `deliver=False` records it as owed but sends nothing, as when a delivery is lost.
        """
        with self._lock:
            event_id = new_id("evt")
            body: dict[str, Any] = {"id": event_id, "object": "event"}
            if account:
                body["account"] = account
            body.update(
                api_version=API_VERSION,
                created=int(self._clock()),
                data={"object": copy.deepcopy(data_object)},
                livemode=False,
                request=dict(request) if request else {"id": None, "idempotency_key": None},
                type=event_type,
            )
            targets = [
                endpoint_id
                for endpoint_id, endpoint in self._endpoints.items()
                if endpoint.subscribes(event_type) and endpoint.hears(account)
            ]
            self._events[event_id] = _Event(body, account, targets, set(targets), withheld=not deliver)
            if deliver:
                for endpoint_id in targets:
                    self.courier.enqueue(event_id, endpoint_id)

    # -- for test controls -------------------------------------------------------------------

    def events(self, account: str) -> list[dict[str, Any]]:
        """An account's events, oldest first."""
        with self._lock:
            return [e.shown() for e in self._events.values() if e.account == account]

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, oldest first, with its secret, account and `connect`."""
        with self._lock:
            return [
                {
                    **copy.deepcopy(e.body),
                    "secret": e.secret,
                    "account": e.account or None,
                    "connect": e.connect,
                }
                for e in self._endpoints.values()
            ]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery attempt, oldest first."""
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def deliver(self, event_id: str, endpoint_id: str | None) -> list[dict[str, Any]]:
        """Send an event now to one endpoint or to those subscribed when it happened."""
        with self._lock:
            event = self._events.get(event_id)
            if event is None:
                raise KeyError(event_id)
            if endpoint_id is not None and endpoint_id not in self._endpoints:
                raise KeyError(endpoint_id)
            targets = [endpoint_id] if endpoint_id else list(event.targets)
        sent = (self.courier.send_now(event_id, target) for target in targets)  # without the lock
        return [record for record in sent if record is not None]

    # -- /v1/events ----------------------------------------------------------------------------

    def list_events(self, call: ApiCall) -> dict[str, Any]:
        """GET /v1/events, newest first, by `type` (* wildcards), `types[]`, `created`, `delivery_success`."""
        params = call.params
        only(params, PAGE_PARAMS | {"type", "types", "created", "delivery_success"})
        expand_paths(params, set())
        if "type" in params and "types" in params:
            raise invalid("You may pass either `type` or `types`, but not both.", "types")
        filters: list[Callable[[_Event], bool]] = []
        if "type" in params:
            wanted = text(params["type"], "type")
            pattern = re.compile(".*".join(re.escape(part) for part in wanted.split("*")))
            filters.append(lambda e: bool(pattern.fullmatch(e.body["type"])))
        if "types" in params:
            types = params["types"]
            if not isinstance(types, list) or not types:
                raise invalid("Invalid array", "types")
            if len(types) > MAX_TYPES_FILTER:
                raise invalid(f"You may pass up to {MAX_TYPES_FILTER} types.", "types")
            filters.append(lambda e: e.body["type"] in types)
        if "created" in params:
            within = created_filter(params["created"])
            filters.append(lambda e: within(e.body["created"]))
        if "delivery_success" in params:
            delivered = boolean(params["delivery_success"], "delivery_success")
            filters.append(lambda e: e.undelivered != delivered)
        with self._lock:
            found = {e.body["id"]: e for e in reversed(self._events.values()) if e.account == call.account}
            page = list_page(
                [{"id": event_id} for event_id in found],
                params,
                "/v1/events",
                "event",
                lambda o: all(f(found[o["id"]]) for f in filters),
            )
            page["data"] = [found[o["id"]].shown() for o in page["data"]]
            return page

    def retrieve_event(self, call: ApiCall) -> dict[str, Any]:
        """GET /v1/events/{id}, of the calling account only."""
        only(call.params, {"expand"})
        expand_paths(call.params, set())
        with self._lock:
            event = self._events.get(call.object_id)
            if event is None or event.account != call.account:
                raise missing("event", call.object_id)
            return event.shown()

    # -- /v1/webhook_endpoints -------------------------------------------------------------------

    def create_endpoint(self, call: ApiCall) -> dict[str, Any]:
        """POST /v1/webhook_endpoints: the answer is the only one that shows the secret."""
        params = call.params
        only(params, {"url", "enabled_events", "connect", "api_version", "description", "metadata", "expand"})
        expand_paths(params, set())
        for name in ("url", "enabled_events"):
            if name not in params:
                raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
        self._check_endpoint_params(params)
        connect = boolean(params["connect"], "connect") if "connect" in params else False
        api_version = params.get("api_version")
        if api_version is not None and api_version != API_VERSION:
            raise invalid(f"The emulator renders events in API version {API_VERSION} only.", "api_version")
        endpoint = _Endpoint(
            body={
                "id": new_id("we"),
                "object": "webhook_endpoint",
                "api_version": api_version,
                "application": None,
                "created": int(self._clock()),
                "description": params.get("description"),
                "enabled_events": list(params["enabled_events"]),
                "livemode": False,
                "metadata": params.get("metadata") or {},
                "status": "enabled",
                "url": params["url"],
            },
            account=call.account,
            connect=connect,
            secret=f"whsec_{secrets.token_hex(16)}",
        )
        with self._lock:
            self._endpoints[endpoint.body["id"]] = endpoint
        return {**copy.deepcopy(endpoint.body), "secret": endpoint.secret}

    def retrieve_endpoint(self, call: ApiCall) -> dict[str, Any]:
        """GET /v1/webhook_endpoints/{id}."""
        only(call.params, {"expand"})
        expand_paths(call.params, set())
        with self._lock:
            return copy.deepcopy(self._endpoint(call).body)

    def update_endpoint(self, call: ApiCall) -> dict[str, Any]:
        """POST /v1/webhook_endpoints/{id}: url, enabled_events, description, metadata, disabled."""
        params = call.params
        only(params, {"url", "enabled_events", "description", "metadata", "disabled", "expand"})
        expand_paths(params, set())
        self._check_endpoint_params(params)
        disabled = boolean(params["disabled"], "disabled") if "disabled" in params else None
        with self._lock:
            endpoint = self._endpoint(call)
            for name in ("url", "description"):
                if name in params:
                    endpoint.body[name] = params[name]
            if "enabled_events" in params:
                endpoint.body["enabled_events"] = list(params["enabled_events"])
            if disabled is not None:
                endpoint.body["status"] = "disabled" if disabled else "enabled"
            if "metadata" in params:
                # As with Stripe: an empty value unsets a key, an empty `metadata` unsets them all.
                changes = params["metadata"]
                merged = {} if changes == "" else {**endpoint.body["metadata"], **changes}
                endpoint.body["metadata"] = {k: v for k, v in merged.items() if v != ""}
            return copy.deepcopy(endpoint.body)

    def delete_endpoint(self, call: ApiCall) -> dict[str, Any]:
        """DELETE /v1/webhook_endpoints/{id}: events stop being owed to it."""
        only(call.params, set())
        with self._lock:
            endpoint = self._endpoint(call)
            del self._endpoints[call.object_id]
            for event in self._events.values():
                event.pending.discard(call.object_id)
            return {"id": endpoint.body["id"], "object": "webhook_endpoint", "deleted": True}

    def list_endpoints(self, call: ApiCall) -> dict[str, Any]:
        """GET /v1/webhook_endpoints: the calling account's, newest first."""
        only(call.params, PAGE_PARAMS)
        expand_paths(call.params, set())
        with self._lock:
            found = [
                copy.deepcopy(e.body) for e in reversed(self._endpoints.values()) if e.account == call.account
            ]
        return list_page(found, call.params, "/v1/webhook_endpoints", "webhook endpoint")

    def _endpoint(self, call: ApiCall) -> _Endpoint:
        endpoint = self._endpoints.get(call.object_id)
        if endpoint is None or endpoint.account != call.account:
            raise missing("webhook endpoint", call.object_id)
        return endpoint

    @staticmethod
    def _check_endpoint_params(params: dict[str, Any]) -> None:
        if "url" in params:
            url(params["url"], "url")
        if "enabled_events" in params:
            enabled = params["enabled_events"]
            if not isinstance(enabled, list) or not enabled:
                raise invalid(
                    "Invalid array: enabled_events must list at least one event type", "enabled_events"
                )
            for index, name in enumerate(enabled):
                if name != "*" and text(name, f"enabled_events[{index}]") not in EVENT_TYPES:
                    raise invalid(
                        f"Invalid enabled_events[{index}]: must be '*' or a known event type, not {name!r}",
                        f"enabled_events[{index}]",
                    )
        if "metadata" in params and params["metadata"] != "":
            check_metadata(params["metadata"])
        if "description" in params and not isinstance(params["description"], str):
            raise invalid("Invalid description: must be a string", "description")

    # -- the courier's callbacks -----------------------------------------------------------------

    def _envelope(self, event_id: str, endpoint_id: str, manual: bool) -> Envelope | None:
        # What to send, rendered at each attempt (pending_webhooks changes); None once
        # nothing is owed: gone, disabled, or delivered meanwhile by a manual resend.
        with self._lock:
            event = self._events.get(event_id)
            endpoint = self._endpoints.get(endpoint_id)
            if event is None or endpoint is None or endpoint.body["status"] != "enabled":
                return None
            if not manual and endpoint_id not in event.pending:
                return None
            payload = json.dumps(event.shown(), indent=2, ensure_ascii=False).encode()
            return Envelope(endpoint.body["url"], payload, endpoint.secret)

    def _record(
        self, event_id: str, endpoint_id: str, outcome: Outcome, manual: bool
    ) -> dict[str, Any] | None:
        with self._lock:
            event = self._events.get(event_id)
            endpoint = self._endpoints.get(endpoint_id)
            if event is None or endpoint is None:  # reset, or deleted, while the attempt was under way
                return None
            event.attempts[endpoint_id] = attempt = event.attempts.get(endpoint_id, 0) + 1
            if outcome.succeeded:
                event.pending.discard(endpoint_id)
                event.withheld = False
            record = {
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "event_type": event.body["type"],
                "url": endpoint.body["url"],
                "attempt": attempt,
                "status": outcome.status,
                "error": outcome.error,
                "manual": manual,
            }
            self._deliveries.append(record)
            return dict(record)
