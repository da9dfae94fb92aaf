"""20 concurrent requests for one reference, each from its own process.

Separate processes share nothing but moto (over HTTP) and the Stripe emulator, as
separate Lambda containers share nothing but DynamoDB and Stripe.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
from multiprocessing.synchronize import Barrier
from typing import Any

from tests.conftest import ROUTE, Company, Stack

WORKERS = 20


def _one_request(
    barrier: Barrier, results: multiprocessing.Queue[tuple[int, dict[str, Any]]], body: str, key_id: str
) -> None:
    # Importing the handler is a cold start; the barrier makes the invocations, not the
    # imports, happen together.
    from handlers.checkout_api import lambda_handler
    from localdev.apigw import LocalContext, rest_event

    event = rest_event("POST", ROUTE, body, headers={"Content-Type": "application/json"}, api_key_id=key_id)
    barrier.wait(timeout=120)
    response = lambda_handler(event, LocalContext())
    results.put((response["statusCode"], json.loads(response["body"])))


def test_twenty_concurrent_requests_leave_exactly_one_open_recorded_session(
    company: Company, stack: Stack
) -> None:
    reference = "booking-concurrent"
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(WORKERS)
    results: multiprocessing.Queue[tuple[int, dict[str, Any]]] = spawn.Queue()
    body = json.dumps(company.request(reference))
    workers = [
        spawn.Process(target=_one_request, args=(barrier, results, body, company.api_key_id))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    answers: list[tuple[int, dict[str, Any]]] = []
    try:
        for _ in range(WORKERS):
            answers.append(results.get(timeout=240))
    except queue.Empty:
        raise AssertionError(f"only {len(answers)} of {WORKERS} workers answered") from None
    finally:
        for worker in workers:
            worker.join(timeout=30)

    statuses = sorted(status for status, _ in answers)
    assert set(statuses) <= {200, 409}, answers
    assert 200 in statuses
    for status, answer in answers:
        if status == 409:
            assert answer["ResponseStatus"]["ErrorCode"] == "CheckoutInProgress"
            assert "in progress" in answer["ResponseStatus"]["Message"]

    at_stripe = [
        s
        for s in stack.emulator.sessions()
        if s["client_reference_id"] == reference and s["metadata"]["CompanyId"] == company.company_id
    ]
    record = company.sessions(reference)
    open_at_stripe = [s["id"] for s in at_stripe if s["status"] == "open"]
    assert len(open_at_stripe) == 1
    assert open_at_stripe == [record["current_session_id"]]
    assert {s["id"] for s in at_stripe} == {s["session_id"] for s in record["sessions"]}
    assert len(at_stripe) == statuses.count(200)
    assert {s["session_id"]: s["status"] for s in record["sessions"]} == {
        s["id"]: s["status"] for s in at_stripe
    }
