"""`./dev bench`: cold start, warm latency and memory of the checkout function.

Prints figures and asserts nothing: these machines are shared and noisy, so targets are
read by people comparing runs, not enforced by tests. Latency is measured against moto
and the emulator on loopback, so it shows the function's own cost plus local I/O, not
real AWS or Stripe round trips.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLD_START = """
import time, resource
started = time.perf_counter()
import handlers.checkout_api
elapsed = (time.perf_counter() - started) * 1000
print(f"{elapsed:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def cold_start(runs: int) -> tuple[list[float], list[int]]:
    """Import time of the handler module (ms) and peak RSS (KiB), each in a fresh interpreter."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-north-1", "PYTHONDONTWRITEBYTECODE": "1"}
    times: list[float] = []
    rss: list[int] = []
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", COLD_START], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        rss.append(int(out[1]))
    return times, rss


def warm(requests: int) -> dict[str, list[float]]:
    """Per-request handler latency (ms) for new references and for repeated ones."""
    from localdev.apigw import LocalContext, rest_event
    from localdev.aws_stack import LocalAws, aws_environment, create_tables
    from localdev.stripe_emulator import StripeEmulator

    aws = LocalAws().start()
    emulator = StripeEmulator().start()
    tables = {"COMPANIES_TABLE_NAME": "bench-companies", "SESSIONS_TABLE_NAME": "bench-sessions"}
    os.environ.update({**aws_environment(aws.url), **tables, "STRIPE_API_BASE": emulator.url})
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    os.environ["ALLOW_UNBOUND_API_KEYS"] = "true"  # bare events, as `sam local invoke` sends
    create_tables(tables, aws.url)
    from checkout.admin import main as admin

    company = str(uuid.uuid4())
    with redirect_stdout(io.StringIO()):
        admin(["company", "put", "--company-id", company, "--allowed-url-prefix", "https://b.example/",
               "--confirmation-url", "https://b.example/ok", "--stripe-secret-key-stdin"],
              stdin=io.StringIO("sk_test_51BenchmarkKey000000000000"))  # fmt: skip
        admin(["article", "put", "--company-id", company, "--article-type-id", "1", "--article-id", "1",
               "--name", "A", "--unit-amount", "1000", "--currency", "SEK"])  # fmt: skip
    from handlers.checkout_api import lambda_handler

    def call(reference: str) -> float:
        body = {"CompanyId": company, "CountryCode": "SE", "InternalReferenceId": reference,
                "Articles": [{"ArticleId": 1, "ArticleTypeId": 1}]}  # fmt: skip
        event = rest_event("POST", "/payment/stripe/v1/checkout", json.dumps(body))
        started = time.perf_counter()
        with redirect_stdout(io.StringIO()):  # EMF lines
            response = lambda_handler(event, LocalContext())
        elapsed = (time.perf_counter() - started) * 1000
        if response["statusCode"] != 200:
            raise SystemExit(f"benchmark request failed: {response['body']}")
        return elapsed

    call("warm-up")
    results = {
        "new reference (create)": [call(f"bench-{i}") for i in range(requests)],
        "same reference (expire + create)": [call("bench-repeat") for _ in range(requests)],
    }
    emulator.stop()
    aws.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args(argv)

    times, rss = cold_start(args.cold_runs)
    print(f"cold start: import of handlers.checkout_api, {args.cold_runs} fresh interpreters")
    print(
        f"  median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms   max {max(times):7.1f} ms"
    )
    print(f"  peak RSS after import: median {statistics.median(rss) / 1024:.1f} MiB")
    print(f"warm invocations through the handler ({args.requests} each; moto and emulator on loopback)")
    for name, values in warm(args.requests).items():
        print(
            f"  {name:34s} p50 {_percentile(values, 0.5):6.1f} ms   p95 {_percentile(values, 0.95):6.1f} ms"
            f"   max {max(values):6.1f} ms"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process (handler + moto + emulator): {peak:.1f} MiB")


if __name__ == "__main__":
    main()
