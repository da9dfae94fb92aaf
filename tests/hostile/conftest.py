"""Fixtures of the hostile-input suite and the fault matrix (docs/reliability.md).

`fast` swaps in a service whose clients give up after `TIMEOUT` seconds and retry
after at most 10 ms, so a fault that exhausts every retry costs about a second. Only the
SDKs' backoff sleeps are shortened; what is retried, how often, and what the service
does after are the same as deployed. The lease keeps its deployed length.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from stripe._http_client import HTTPClient

from checkout import aws_clients
from checkout.composition import Services, build_services
from checkout.config import Config
from tests.conftest import Stack

TIMEOUT = 0.3  # seconds every client here waits for an answer
LATE = TIMEOUT + 0.15  # a fault's delay: an answer the client no longer waits for


def use_fast_service(
    monkeypatch: pytest.MonkeyPatch, handler_module: ModuleType, **overrides: Any
) -> Services:
    """A new container's services, with short timeouts and no backoff sleeps."""
    fast = dataclasses.replace(
        aws_clients.SETTINGS, connect_timeout=TIMEOUT, read_timeout=TIMEOUT, max_backoff_seconds=0.01
    )
    monkeypatch.setattr(aws_clients, "SETTINGS", fast)
    monkeypatch.setattr(HTTPClient, "_sleep_time_seconds", lambda self, num_retries: 0.01)
    config = Config.from_env()
    settings = {"stripe_timeout_seconds": TIMEOUT, "settings_cache_seconds": 0, "secret_cache_seconds": 0}
    services = build_services(dataclasses.replace(config, **(settings | overrides)))
    monkeypatch.setattr(handler_module, "SERVICES", services)
    return services


def lease_write(reference: str) -> str:
    """`matching` for the UpdateItem that takes a reference's lease (not its renewal or release)."""
    return f"(?=.*list_append)(?=.*{re.escape(reference)})"


def wait_for_background_work(timeout: float = 10.0) -> None:
    """Wait until no lease renewal of an earlier request is still running."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == "lease-renewal":
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, handler_module: ModuleType, stack: Stack) -> Iterator[Services]:
    services = use_fast_service(monkeypatch, handler_module)
    yield services
    stack.aws.clear_faults()
    stack.emulator.clear_faults()
    wait_for_background_work()
