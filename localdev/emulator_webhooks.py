"""Webhook delivery for the Stripe emulator: Stripe's signature scheme and a courier thread.

Stripe POSTs each event to every subscribed endpoint on its own schedule, signs the
exact bytes it sends, treats anything but a 2xx (redirects included) as a failure and
retries with backoff. The `Courier` does the same on a background thread, with a retry
schedule short enough for tests. It knows nothing of events or endpoints: the emulator
hands it a `prepare` callback (what to send for an event and endpoint, or None when
nothing is owed any more) and a `record` callback (what came of an attempt).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
CONTENT_TYPE = "application/json; charset=utf-8"
# Stripe retries for up to three days; these are seconds, so a test sees every retry.
DEFAULT_RETRY_DELAYS = (0.2, 0.5, 1.0)


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature`: `t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{payload}" keyed by the secret>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Envelope:
    """One event for one endpoint: where to send it, the bytes to send, the key to sign them with."""

    url: str
    payload: bytes
    secret: str


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the HTTP status (0 when there was none) and why, on failure."""

    status: int
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


def post(envelope: Envelope, timeout: float) -> Outcome:
    """POST the envelope once, signed now; no redirects are followed, as with Stripe."""
    parts = urlsplit(envelope.url)
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        "Accept": "*/*; q=0.5, application/xml",
        "Cache-Control": "no-cache",
        "Stripe-Signature": signature_header(envelope.payload, envelope.secret, int(time.time())),
    }
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
        try:
            connection.request("POST", path, body=envelope.payload, headers=headers)
            response = connection.getresponse()
            response.read()
            return Outcome(response.status, None if 200 <= response.status < 300 else response.reason)
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Outcome(0, f"{type(exc).__name__}: {exc}")


@dataclass(order=True)
class _Job:
    due: float
    order: int
    event_id: str = field(compare=False)
    endpoint_id: str = field(compare=False)
    attempt: int = field(compare=False)  # 1 for the first try, then retries


Prepare = Callable[[str, str, bool], Envelope | None]
Record = Callable[[str, str, Outcome, bool], dict[str, Any] | None]


class Courier:
    """Delivers (event, endpoint) pairs on a background thread, retrying failures on a schedule.

    `prepare(event_id, endpoint_id, manual)` and `record(event_id, endpoint_id, outcome,
    manual)` are called without the courier's lock held, so they may take the caller's.
    """

    def __init__(
        self,
        prepare: Prepare,
        record: Record,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        timeout: float = 5.0,
    ) -> None:
        self._prepare = prepare
        self._record = record
        self._retry_delays = tuple(retry_delays)
        self._timeout = timeout
        self._queue: list[_Job] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._in_flight = 0
        self._paused = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Deliver in a background thread until `stop()`."""
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="stripe-emulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering; an attempt under way finishes first."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)
            self._thread = None

    def enqueue(self, event_id: str, endpoint_id: str) -> None:
        """Deliver an event to an endpoint as soon as the courier is free (and not paused)."""
        self._push(_Job(time.monotonic(), next(self._order), event_id, endpoint_id, 1))

    def send_now(self, event_id: str, endpoint_id: str) -> dict[str, Any] | None:
        """One attempt in the caller's thread, paused or not, with no retries (a manual resend)."""
        envelope = self._prepare(event_id, endpoint_id, True)
        if envelope is None:
            return None
        return self._record(event_id, endpoint_id, post(envelope, self._timeout), True)

    def pause(self) -> None:
        """Hold queued deliveries (an attempt under way still finishes)."""
        with self._changed:
            self._paused = True

    def resume(self) -> None:
        """Release held deliveries."""
        with self._changed:
            self._paused = False
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget every queued delivery and retry."""
        with self._changed:
            self._queue.clear()
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> None:
        """Block until nothing is queued, due for retry or under way; paused deliveries do not count.

        Raises TimeoutError if that takes longer than `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight or (self._queue and not self._paused):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"webhook deliveries still busy after {timeout}s: {len(self._queue)} queued, "
                        f"{self._in_flight} under way"
                    )
                self._changed.wait(remaining)

    def _push(self, job: _Job) -> None:
        with self._changed:
            heapq.heappush(self._queue, job)
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    if not self._paused and self._queue and self._queue[0].due <= now:
                        job = heapq.heappop(self._queue)
                        self._in_flight += 1
                        break
                    wait = None if self._paused or not self._queue else self._queue[0].due - now
                    self._changed.wait(wait)
            try:
                self._attempt(job)
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

    def _attempt(self, job: _Job) -> None:
        envelope = self._prepare(job.event_id, job.endpoint_id, False)
        if envelope is None:
            return
        outcome = post(envelope, self._timeout)
        self._record(job.event_id, job.endpoint_id, outcome, False)
        if not outcome.succeeded and job.attempt <= len(self._retry_delays):
            due = time.monotonic() + self._retry_delays[job.attempt - 1]
            self._push(_Job(due, next(self._order), job.event_id, job.endpoint_id, job.attempt + 1))
