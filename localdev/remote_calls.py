"""Remote calls as the local servers saw them, and the critical path through them.

Moto (`LocalAws`) and the Stripe emulator record every call they answer in a shared
`CallLog`: which service, which operation, and when it started and ended on the server
(`time.perf_counter`, one clock, since both servers run in one process). Recording on
the server side makes the figures independent of how a handler builds its clients.

The critical path of a request is the chain of its calls, each starting after the
previous one ended, that took the longest in total. Calls that overlap in time ran
concurrently, so at most one of them is on the chain: the DynamoDB writes a handler
hides behind a Stripe call cost it nothing, and three Stripe expiries sent at once cost
one round trip. With latency injected per call (`latency=` on both servers), the chain's
length is what the request had to wait for the network.

The injected latency is a floor: a call takes at least that long at the server, and the
server's own work counts toward it. moto spends several milliseconds of Python on a
TransactWriteItems on a busy machine, which says nothing about DynamoDB; added on top
of the latency it would penalise handlers for moto's speed rather than for round trips.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

STRIPE = "Stripe"
DYNAMODB = "DynamoDB"
SECRETS_MANAGER = "SecretsManager"


@dataclass(frozen=True)
class RemoteCall:
    """One call answered by a local server."""

    service: str
    operation: str
    started: float
    ended: float

    @property
    def duration(self) -> float:
        """Seconds the server spent on the call, injected latency included."""
        return self.ended - self.started


class CallLog:
    """Calls recorded by the servers, in the order they ended; safe across server threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[RemoteCall] = []

    def record(self, service: str, operation: str, started: float, ended: float) -> None:
        """Add one answered call."""
        with self._lock:
            self._calls.append(RemoteCall(service, operation, started, ended))

    def mark(self) -> int:
        """A position to pass to `since` later."""
        with self._lock:
            return len(self._calls)

    def since(self, mark: int) -> list[RemoteCall]:
        """The calls recorded after `mark` was taken."""
        with self._lock:
            return self._calls[mark:]


def critical_path(calls: list[RemoteCall]) -> list[RemoteCall]:
    """The longest chain (by time at the servers) of calls each starting after the previous ended."""
    ordered = sorted(calls, key=lambda c: (c.ended, c.started))
    # longest[i]: the longest chain ending with ordered[i], as (total seconds, previous index).
    longest: list[tuple[float, int | None]] = []
    for call in ordered:
        best: tuple[float, int | None] = (0.0, None)
        for index in range(len(longest)):
            if ordered[index].ended > call.started:
                break  # sorted by end: no later call ended before this one started
            if longest[index][0] > best[0]:
                best = (longest[index][0], index)
        longest.append((best[0] + call.duration, best[1]))
    if not ordered:
        return []
    position: int | None = max(range(len(ordered)), key=lambda i: longest[i][0])
    chain: list[RemoteCall] = []
    while position is not None:
        chain.append(ordered[position])
        position = longest[position][1]
    return chain[::-1]


def by_service(calls: list[RemoteCall]) -> Counter[str]:
    """How many of `calls` went to each service."""
    return Counter(call.service for call in calls)


def hold_until(started: float, latency: float) -> None:
    """Sleep until `latency` seconds have passed since `started` (`time.perf_counter`)."""
    remaining = started + latency - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
