"""The critical path through a request's remote calls, as `./dev bench` counts round trips."""

from __future__ import annotations

import pytest

from localdev.remote_calls import CallLog, RemoteCall, by_service, critical_path


def call(service: str, started: float, ended: float) -> RemoteCall:
    return RemoteCall(service, "op", started, ended)


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([], {}),
        # one after the other: every call is on the path
        ([call("DynamoDB", 0, 1), call("Stripe", 1, 11), call("DynamoDB", 11, 12)], {"DynamoDB": 2, "Stripe": 1}),
        # three expiries sent at once count once
        (
            [call("DynamoDB", 0, 1), call("Stripe", 2, 12), call("Stripe", 2.1, 12.2),
             call("Stripe", 2.2, 12.1), call("Stripe", 13, 23)],
            {"DynamoDB": 1, "Stripe": 2},
        ),
        # DynamoDB writes hidden behind a Stripe call cost nothing
        ([call("Stripe", 0, 10), call("DynamoDB", 0.5, 1.5), call("DynamoDB", 2, 3)], {"Stripe": 1}),
        # but a longer chain of short calls beats one long call beside it
        ([call("Stripe", 0, 2.5), call("DynamoDB", 0, 1), call("DynamoDB", 1, 2), call("DynamoDB", 2, 3)],
         {"DynamoDB": 3}),
        # a call that starts the instant the previous one ended follows it
        ([call("DynamoDB", 0, 1), call("DynamoDB", 1, 2)], {"DynamoDB": 2}),
    ],
)  # fmt: skip
def test_critical_path_counts_the_longest_chain_of_calls_that_follow_each_other(
    calls: list[RemoteCall], expected: dict[str, int]
) -> None:
    assert dict(by_service(critical_path(calls))) == expected


def test_critical_path_is_in_time_order() -> None:
    calls = [call("Stripe", 5, 6), call("DynamoDB", 0, 1), call("DynamoDB", 2, 3)]
    assert [c.started for c in critical_path(calls)] == [0, 2, 5]


def test_call_log_returns_the_calls_recorded_after_a_mark() -> None:
    log = CallLog()
    log.record("DynamoDB", "GetItem", 0, 1)
    mark = log.mark()
    log.record("Stripe", "POST /v1/checkout/sessions", 1, 2)
    assert log.since(mark) == [RemoteCall("Stripe", "POST /v1/checkout/sessions", 1, 2)]
