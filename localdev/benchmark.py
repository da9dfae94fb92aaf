"""`./dev bench`: this service against a straightforward reference handler, in one run.

The servers (moto, the Stripe emulator) run in this process and make every call they
answer take at least a fixed latency; each handler runs in a fresh worker process of its own
(`localdev.bench_worker`), so its CPU time, memory and cold start are its own. Requests
alternate between the two handlers, so a noisy neighbour hurts both alike. Per scenario
it prints latency, CPU per request and the round trips on the critical path, with the
ratio of the service to the reference; then cold start and peak RSS.

It asserts nothing: these machines are shared and noisy, so the figures are for people
comparing runs. The method is described in docs/benchmark.md.

Only the handler entry points, the localdev helpers and the tables are used, so a
redesign of the service's internals needs no change here; the one exception is the
crafted registry state of the "open priors" scenario (`Bench.craft_open_sessions`),
which is written in the tables' key layout.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import stripe

from localdev.apigw import rest_event
from localdev.aws_stack import LocalAws, api_key_id, aws_environment, create_tables, create_usage_plan
from localdev.local_api import DEMO_COMPANY_ID, onboard_demo_company, sample_request
from localdev.remote_calls import DYNAMODB, SECRETS_MANAGER, STRIPE, CallLog, by_service, critical_path
from localdev.stripe_emulator import StripeEmulator

ROOT = Path(__file__).resolve().parent.parent
ROUTE = "/payment/stripe/v1/checkout"
HANDLERS = {"service": "handlers.checkout_api", "reference": "benchmarks.reference_handler"}
TABLES = {"COMPANIES_TABLE_NAME": "bench-companies", "SESSIONS_TABLE_NAME": "bench-sessions"}
STRIPE_KEY = "sk_test_51BenchmarkKey000000000000"
SITE = "http://127.0.0.1:3000"  # the demo company's allowed URLs, as in `./dev run`
# What the deployed function runs with (template.yaml), for both handlers.
WORKER_ENVIRONMENT = {
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_SERVICE_NAME": "stripe-checkout",
    "POWERTOOLS_METRICS_NAMESPACE": "BookingPayments",
}
SERVICES = (STRIPE, DYNAMODB, SECRETS_MANAGER)


@dataclass(frozen=True)
class Scenario:
    """A checkout measured for a fresh reference, after unmeasured preparation."""

    title: str
    prior_checkouts: int = 0  # made through the handler under test
    crafted_open: int = 0  # open sessions written into the registry directly


SCENARIOS = (
    Scenario("first checkout of a reference"),
    Scenario("second checkout (one prior session)", prior_checkouts=1),
    Scenario("fifth checkout (four prior sessions)", prior_checkouts=4),
    Scenario("three open prior sessions in the registry", crafted_open=3),
)


@dataclass
class Sample:
    """One measured request."""

    ms: float
    cpu_ms: float
    chain_ms: float  # time at the servers along the critical path
    chain: Counter[str]
    calls: Counter[str]


@dataclass
class Figures:
    """What one handler measured in one run."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    first_response_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    import_rss_kib: list[int] = field(default_factory=list)
    peak_rss_kib: int = 0
    warnings: Counter[str] = field(default_factory=Counter)


class Worker:
    """A handler in a fresh process (`localdev.bench_worker`)."""

    def __init__(self, module: str, env: dict[str, str], key_id: str) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "localdev.bench_worker", module],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.module = module
        self.key_id = key_id
        self.peak_rss_kib = 0

    def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one checkout request and return the worker's answer; it must be a 200."""
        assert self.process.stdin is not None and self.process.stdout is not None
        event = rest_event(
            "POST",
            ROUTE,
            json.dumps(body),
            headers={"Content-Type": "application/json"},
            api_key_id=self.key_id,  # the demo company's, as API Gateway would pass it
        )
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise SystemExit(f"bench: the {self.module} worker died:\n{self._stderr.read()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        if answer["status"] != 200 or "SessionId" not in json.loads(answer["body"]):
            raise SystemExit(f"bench: {self.module} answered {answer['status']}: {answer['body']}")
        self.peak_rss_kib = answer["max_rss_kib"]
        return answer

    def close(self) -> None:
        """Let the worker finish and exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self._stderr.close()


class Bench:
    """The servers, the demo company and the measurements."""

    def __init__(self, stripe_latency: float, aws_latency: float) -> None:
        self.stripe_latency, self.aws_latency = stripe_latency, aws_latency
        # Both handlers import from bytecode, as a deployment package built with compiled
        # .pyc files does; where PYTHONDONTWRITEBYTECODE is set (as on these machines) every
        # cold import would otherwise compile the sources, which favours one-file handlers.
        for folder in ("src", "benchmarks"):
            compileall.compile_dir(ROOT / folder, quiet=1)
        self.calls = CallLog()
        self.aws = LocalAws(calls=self.calls).start()
        self.emulator = StripeEmulator(calls=self.calls).start()
        os.environ.update({**aws_environment(self.aws.url), **TABLES, "STRIPE_API_BASE": self.emulator.url})
        create_tables(TABLES, self.aws.url)
        os.environ["USAGE_PLAN_ID"] = create_usage_plan(self.aws.url)
        key_id = api_key_id(onboard_demo_company(SITE, STRIPE_KEY), self.aws.url)
        assert key_id is not None
        self.key_id = key_id
        self.env = {**os.environ, **WORKER_ENVIRONMENT}
        self.sessions = boto3.resource("dynamodb").Table(TABLES["SESSIONS_TABLE_NAME"])

    def stop(self) -> None:
        """Stop the servers."""
        self.emulator.stop()
        self.aws.stop()

    @contextmanager
    def latency(self) -> Iterator[None]:
        """Inject the latencies inside the block only: preparation runs at loopback speed."""
        self.emulator.latency, self.aws.latency = self.stripe_latency, self.aws_latency
        try:
            yield
        finally:
            self.emulator.latency = self.aws.latency = 0.0

    @staticmethod
    def request(reference: str) -> dict[str, Any]:
        """The seed's sample request for the demo company."""
        return sample_request(SITE, reference)

    def cold_start(self, name: str, figures: Figures) -> Worker:
        """A fresh worker, timed from its start to its first answer (a first checkout)."""
        with self.latency():
            started = time.perf_counter()
            worker = Worker(HANDLERS[name], self.env, self.key_id)
            answer = worker.call(self.request(f"bench-cold-{name}-{uuid.uuid4().hex[:12]}"))
            figures.first_response_ms.append((time.perf_counter() - started) * 1000)
        figures.import_ms.append(answer["import_ms"])
        figures.import_rss_kib.append(answer["import_rss_kib"])
        return worker

    def prepare(self, worker: Worker, name: str, scenario: Scenario) -> tuple[str, list[str]]:
        """A fresh reference in the scenario's state, and the ids of sessions crafted open."""
        reference = f"bench-{name}-{uuid.uuid4().hex[:12]}"
        for _ in range(scenario.prior_checkouts):
            worker.call(self.request(reference))
        return reference, self.craft_open_sessions(reference, scenario.crafted_open)

    def craft_open_sessions(self, reference: str, count: int) -> list[str]:
        """Sessions open at Stripe and recorded open in the registry, the newest current.

        The service never leaves this state in normal operation; it is what records that
        lag behind Stripe look like (a crash after Stripe answered, an older deployment, a
        restored table), and what the reference handler sees after concurrent requests.
        Written in the key layout of src/checkout/dynamodb_layout.py: if that changes,
        change this too (the run warns when the service leaves any of them open).
        """
        if not count:
            return []
        client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": self.emulator.url})
        price = {"currency": "sek", "unit_amount": 45000, "product_data": {"name": "Haircut 45 min"}}
        params: Any = {"mode": "payment", "client_reference_id": reference, "success_url": f"{SITE}/demo/ok",
                       "line_items": [{"quantity": 1, "price_data": price}]}  # fmt: skip
        head: dict[str, Any] = {"pk": f"REFERENCE#{DEMO_COMPANY_ID}#{reference}",
                                "company_id": DEMO_COMPANY_ID, "reference": reference}  # fmt: skip
        ids: list[str] = []
        for _ in range(count):
            session = client.v1.checkout.sessions.create(params=params)
            now = time.time()
            record: dict[str, Any] = {"sk": f"SESSION#{session.id}", "session_id": session.id,
                                      "status": "open", "state": "open", "payment_status": "unpaid",
                                      "ui_mode": "hosted",
                                      "amount_total": 45000, "currency": "sek", "livemode": False,
                                      "created_at_ms": int(now * 1000), "updated_at": int(now)}  # fmt: skip
            self.sessions.put_item(Item=head | record)
            ids.append(session.id)
        # The registry keeps the open sessions on the reference's head item.
        open_sessions: dict[str, Any] = {sid: {} for sid in ids}
        self.sessions.put_item(
            Item=head
            | {"sk": "HEAD", "current_session_id": ids[-1], "open_sessions": open_sessions, "version": 1}
        )
        return ids

    def measure(self, worker: Worker, reference: str) -> Sample:
        """One checkout with the latencies injected, and the calls it made."""
        with self.latency():
            mark = self.calls.mark()
            answer = worker.call(self.request(reference))
            calls = self.calls.since(mark)
        chain = critical_path(calls)
        chain_ms = sum(call.duration for call in chain) * 1000
        return Sample(answer["ms"], answer["cpu_ms"], chain_ms, by_service(chain), by_service(calls))

    def empty_sessions_table(self) -> None:
        """Delete every item of the sessions table, whatever its key layout.

        moto copies a whole table for every TransactWriteItems (to roll back), so its
        cost would grow with the items earlier requests left behind; DynamoDB's does not.
        """
        names = {f"#k{i}": key["AttributeName"] for i, key in enumerate(self.sessions.key_schema)}
        scan: dict[str, Any] = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        with self.sessions.batch_writer() as batch:
            while True:
                page = self.sessions.scan(**scan)
                for item in page["Items"]:
                    batch.delete_item(Key={name: item[name] for name in names.values()})
                if "LastEvaluatedKey" not in page:
                    break
                scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def still_open(self, session_ids: list[str]) -> int:
        """How many of the sessions are open at the emulator."""
        wanted = set(session_ids)
        return sum(1 for s in self.emulator.sessions() if s["id"] in wanted and s["status"] == "open")


def run(bench: Bench, requests: int, cold_runs: int) -> dict[str, Figures]:
    """Measure both handlers, interleaved, and return their figures."""
    figures = {name: Figures() for name in HANDLERS}
    workers: dict[str, Worker] = {}
    order = list(HANDLERS)
    for index in range(cold_runs):
        for name in order if index % 2 == 0 else order[::-1]:
            worker = bench.cold_start(name, figures[name])
            if index < cold_runs - 1:
                worker.close()
            else:
                workers[name] = worker
    for name, worker in workers.items():  # one unmeasured round of every scenario
        for scenario in SCENARIOS:
            reference, _ = bench.prepare(worker, name, scenario)
            worker.call(bench.request(reference))
    bench.empty_sessions_table()
    for scenario in SCENARIOS:
        for repetition in range(requests):
            for name in order if repetition % 2 == 0 else order[::-1]:
                reference, crafted = bench.prepare(workers[name], name, scenario)
                sample = bench.measure(workers[name], reference)
                figures[name].samples.setdefault(scenario.title, []).append(sample)
                if bench.still_open(crafted):
                    figures[name].warnings[f"{name} left crafted open sessions open ({scenario.title})"] += 1
                bench.empty_sessions_table()
    for name, worker in workers.items():
        figures[name].peak_rss_kib = worker.peak_rss_kib
        worker.close()
    return figures


# -- the report ----------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _count(samples: list[Sample], service: str, what: str) -> str:
    values = [getattr(s, what)[service] for s in samples]
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "-"


def _row(label: str, ours: str, theirs: str, ratio: str = "", target: str = "") -> str:
    return f"  {label:<40}{ours:>11}{theirs:>11}{ratio:>11}   {target}".rstrip()


def _figure(label: str, ours: float, theirs: float, target: str = "", digits: int = 1) -> str:
    return _row(label, f"{ours:.{digits}f}", f"{theirs:.{digits}f}", _ratio(ours, theirs), target)


def _scenario_rows(scenario: Scenario, ours: list[Sample], theirs: list[Sample]) -> list[str]:
    p50_target = "<= 0.60x" if scenario.prior_checkouts == 1 else ""
    rows = [
        scenario.title,
        _figure("p50 latency (ms)", percentile([s.ms for s in ours], 0.5),
                percentile([s.ms for s in theirs], 0.5), p50_target),
        _figure("p95 latency (ms)", percentile([s.ms for s in ours], 0.95),
                percentile([s.ms for s in theirs], 0.95)),
        _figure("critical path at the servers, p50 (ms)", percentile([s.chain_ms for s in ours], 0.5),
                percentile([s.chain_ms for s in theirs], 0.5)),
        _figure("CPU per request, mean (ms)", statistics.fmean(s.cpu_ms for s in ours),
                statistics.fmean(s.cpu_ms for s in theirs)),
    ]  # fmt: skip
    for service, label, target in (
        (STRIPE, "Stripe round trips, critical path", "1"),
        (DYNAMODB, "DynamoDB round trips, critical path", "<= 2"),
        (SECRETS_MANAGER, "Secrets Manager, critical path", ""),
    ):
        rows.append(_row(label, _count(ours, service, "chain"), _count(theirs, service, "chain"), "", target))
    made = ["+".join(_count(samples, s, "calls") for s in SERVICES) for samples in (ours, theirs)]
    rows.append(_row("calls made: Stripe+DynamoDB+Secrets", *made))
    return rows


def report(figures: dict[str, Figures], args: argparse.Namespace) -> str:
    """The printed tables."""
    ours, theirs = figures["service"], figures["reference"]
    lines = [
        "./dev bench: the service (handlers.checkout_api) against a straightforward reference",
        "handler (benchmarks/reference_handler.py), in one run. Method: docs/benchmark.md.",
        f"- latency injected by the servers, at least per call: Stripe {args.stripe_latency_ms:g} ms, "
        f"DynamoDB and Secrets Manager {args.dynamodb_latency_ms:g} ms",
        f"- {args.requests} requests per scenario and handler, each for a fresh reference, the two",
        "  handlers alternating, each in a fresh worker process of its own; nothing is asserted",
        "- critical path: the longest chain of calls each starting after the previous one ended",
        "  (concurrent calls count once); a-b: the range over the requests",
        "- CPU: the worker's process time per request (the servers run in another process)",
        "",
        _row("", "service", "reference", "ratio", "target"),
    ]
    for scenario in SCENARIOS:
        lines += _scenario_rows(scenario, ours.samples[scenario.title], theirs.samples[scenario.title])

    def cpu(f: Figures) -> float:
        return statistics.fmean(statistics.fmean(s.cpu_ms for s in samples) for samples in f.samples.values())

    def median(values: list[float] | list[int]) -> float:
        return float(statistics.median(values))

    lines += [
        "all scenarios",
        _figure("warm CPU per request, mean of scenarios", cpu(ours), cpu(theirs), "<= 1.00x"),
        f"cold start, median of {len(ours.first_response_ms)} fresh worker(s) per handler",
        _figure("first response (ms), from process start", median(ours.first_response_ms),
                median(theirs.first_response_ms), "<= 0.70x", digits=0),
        _figure("import of the handler module (ms)", median(ours.import_ms), median(theirs.import_ms),
                digits=0),
        "memory",
        _figure("peak RSS of the worker (MB)", ours.peak_rss_kib / 1024, theirs.peak_rss_kib / 1024,
                "<= 70 MB"),
        _figure("peak RSS right after the import (MB)", median(ours.import_rss_kib) / 1024,
                median(theirs.import_rss_kib) / 1024),
    ]  # fmt: skip
    lines += [
        f"WARNING: {warning}, {times} time(s): is Bench.craft_open_sessions still the registry's layout?"
        for warning, times in (ours.warnings + theirs.warnings).items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, help="measured requests per scenario and handler (default 30)"
    )
    parser.add_argument("--cold-runs", type=int, help="fresh workers per handler for cold start (default 3)")
    parser.add_argument(
        "--stripe-latency-ms", type=float, default=100.0, help="per Stripe call (default 100)"
    )
    parser.add_argument(
        "--dynamodb-latency-ms",
        type=float,
        default=10.0,
        help="per DynamoDB/Secrets Manager call (default 10)",
    )
    parser.add_argument("--quick", action="store_true", help="3 requests and 1 cold run unless given")
    args = parser.parse_args(argv)
    args.requests = max(1, args.requests or (3 if args.quick else 30))
    args.cold_runs = max(1, args.cold_runs or (1 if args.quick else 3))

    bench = Bench(args.stripe_latency_ms / 1000, args.dynamodb_latency_ms / 1000)
    try:
        figures = run(bench, args.requests, args.cold_runs)
    finally:
        bench.stop()
    print(report(figures, args))


if __name__ == "__main__":
    main()
