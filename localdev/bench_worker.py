"""One handler under test in a process of its own, driven by `localdev.benchmark`.

    python -m localdev.bench_worker MODULE

imports MODULE (for example `handlers.checkout_api`), then reads API Gateway events as
JSON lines on standard input, calls `MODULE.lambda_handler` with each and answers each
with one JSON line: status, body, wall time and CPU time (`time.process_time`, every
thread of this process and nothing else) of the call, the import time and the peak RSS
right after the import, and the process's peak RSS so far (`peak_rss_kib`). The
servers it calls run in the benchmark's process, so what is measured here is the
handler's own cost.

Only the standard library and `localdev.apigw` are imported before the handler, so
the import time and memory are the handler's. Whatever the handler prints (logs, EMF
metrics) goes to /dev/null; the answers use a copy of the original standard output.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import sys
import time

from localdev.apigw import LocalContext


def peak_rss_kib() -> int:
    """This process's peak resident set size since it started, in KiB.

    Linux's `ru_maxrss` carries the peak of the process that spawned this one across
    `exec` (here: the benchmark's, with moto in it), so the kernel's high-water mark of
    this program's own memory, `VmHWM`, is read instead where there is one.
    """
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def main() -> None:
    """Serve requests from standard input until it closes."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

    started = time.perf_counter()
    module = importlib.import_module(sys.argv[1])
    import_ms = (time.perf_counter() - started) * 1000
    import_rss_kib = peak_rss_kib()

    for line in sys.stdin:
        event = json.loads(line)
        wall, cpu = time.perf_counter(), time.process_time()
        response = module.lambda_handler(event, LocalContext())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        sys.stdout.flush()
        answer = {
            "status": response["statusCode"],
            "body": response.get("body") or "",
            "ms": wall * 1000,
            "cpu_ms": cpu * 1000,
            "import_ms": import_ms,
            "import_rss_kib": import_rss_kib,
            "max_rss_kib": peak_rss_kib(),
        }
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
