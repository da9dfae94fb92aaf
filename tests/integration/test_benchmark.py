"""`./dev bench` works: the latency the servers inject, the calls they record, and one
quick run that prints every figure for both handlers. No test here checks a speed."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import stripe

from localdev.aws_stack import REGION, LocalAws
from localdev.benchmark import SCENARIOS
from localdev.cfn_template import load_template
from localdev.remote_calls import DYNAMODB, STRIPE, CallLog
from localdev.stripe_emulator import StripeEmulator
from tests.conftest import STRIPE_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROOT = Path(__file__).resolve().parents[2]


def _dynamodb(url: str) -> DynamoDBClient:
    return boto3.client(
        "dynamodb", endpoint_url=url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_every_local_aws_call_takes_its_latency_slept_outside_the_lock() -> None:
    calls = CallLog()
    aws = LocalAws(latency=0.3, calls=calls).start()
    clients = [_dynamodb(aws.url) for _ in range(2)]
    start = threading.Barrier(2)

    def list_tables(client: DynamoDBClient) -> None:
        start.wait()
        client.list_tables()

    threads = [threading.Thread(target=list_tables, args=(client,)) for client in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        aws.stop()

    first, second = calls.since(0)
    assert {(c.service, c.operation) for c in (first, second)} == {(DYNAMODB, "ListTables")}
    assert min(first.duration, second.duration) >= 0.3
    # Both waited at once: the latency does not queue behind the lock that serialises calls.
    assert second.started < first.ended


def test_every_emulator_call_takes_its_standing_latency_and_is_recorded() -> None:
    calls = CallLog()
    emulator = StripeEmulator(latency=0.05, calls=calls).start()
    try:
        client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator.url})
        params: Any = {
            "mode": "payment", "success_url": "https://shop.example/ok",
            "line_items": [{"quantity": 1, "price_data": {"currency": "sek", "unit_amount": 1000,
                                                          "product_data": {"name": "A"}}}],
        }  # fmt: skip
        session = client.v1.checkout.sessions.create(params=params)
        client.v1.checkout.sessions.expire(session.id)
    finally:
        emulator.stop()
    recorded = calls.since(0)
    assert [(c.service, c.operation) for c in recorded] == [
        (STRIPE, "POST /v1/checkout/sessions"),
        (STRIPE, "POST /v1/checkout/sessions/{id}/expire"),
    ]
    assert all(c.duration >= 0.05 for c in recorded)


def test_the_reference_handler_is_not_in_the_lambda_package() -> None:
    function = load_template()["Resources"]["CheckoutFunction"]["Properties"]
    assert function["CodeUri"] == "src/"
    assert (ROOT / "benchmarks" / "reference_handler.py").is_file()
    assert not list((ROOT / "src").rglob("reference_handler.py"))


def test_a_quick_run_prints_every_scenario_and_figure_for_both_handlers() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "localdev.benchmark", "--quick", "--requests", "2",
         "--stripe-latency-ms", "2", "--dynamodb-latency-ms", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "WARNING" not in out
    number, count, ratio = r"\d+(?:\.\d+)?", r"\d+(?:-\d+)?", r"\d+\.\d\dx"
    per_scenario = {
        "p50 latency (ms)": (number, ratio),
        "p95 latency (ms)": (number, ratio),
        "critical path at the servers, p50 (ms)": (number, ratio),
        "CPU per request, mean (ms)": (number, ratio),
        "Stripe round trips, critical path": (count, None),
        "DynamoDB round trips, critical path": (count, None),
        "Secrets Manager, critical path": (count, None),
        "calls made: Stripe+DynamoDB+Secrets": (rf"{count}\+{count}\+{count}", None),
    }
    once = {
        "warm CPU per request, mean of scenarios": (number, ratio),
        "first response (ms), from process start": (number, ratio),
        "import of the handler module (ms)": (number, ratio),
        "peak RSS of the worker (MB)": (number, ratio),
        "peak RSS right after the import (MB)": (number, ratio),
    }
    blocks = re.split(r"^(?=\S)", out, flags=re.MULTILINE)
    for scenario in SCENARIOS:
        block = next((b for b in blocks if b.startswith(scenario.title)), None)
        assert block is not None, f"no table for {scenario.title}\n{out}"
        for label, (value, ratio_pattern) in per_scenario.items():
            assert _row(block, label, value, ratio_pattern), f"{scenario.title}: {label}\n{out}"
    for label, (value, ratio_pattern) in once.items():
        assert _row(out, label, value, ratio_pattern), f"{label}\n{out}"


def _row(text: str, label: str, value: str, ratio: str | None) -> bool:
    """A row with the label, a figure for the service and for the reference, and the ratio."""
    tail = rf"\s+{ratio}" if ratio else ""
    return (
        re.search(rf"^  {re.escape(label)}\s+{value}\s+{value}{tail}(\s|$)", text, re.MULTILINE) is not None
    )
