"""The Stripe HTTP client (urllib3) fails as stripe-python's RequestsClient fails.

stripe-python decides retries from `APIConnectionError.should_retry`, and the gateway
tells a timeout (504 StripeTimeout) from an unreachable Stripe (502 StripeUnreachable)
by the error's cause; both are checked here against real sockets.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import stripe

from checkout.errors import UpstreamFailure
from checkout.stripe_gateway import StripeHttpClient, _stripe_errors


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _failure(client: StripeHttpClient, url: str) -> tuple[stripe.APIConnectionError, UpstreamFailure]:
    with pytest.raises(stripe.APIConnectionError) as connection_error:
        client.request("post", f"{url}/v1/checkout/sessions", {"Authorization": "Bearer sk_test_x"}, "a=1")
    with pytest.raises(UpstreamFailure) as failure, _stripe_errors("create"):
        raise connection_error.value
    return connection_error.value, failure.value


def test_a_late_answer_is_a_retryable_timeout(silent_server: str) -> None:
    started = time.monotonic()
    error, failure = _failure(StripeHttpClient(connect_timeout=1, read_timeout=0.3), silent_server)

    assert error.should_retry
    assert failure.error_code == "StripeTimeout"
    assert time.monotonic() - started < 2


def test_a_refused_connection_is_a_retryable_unreachable_stripe() -> None:
    error, failure = _failure(StripeHttpClient(1, 1), f"http://127.0.0.1:{_closed_port()}")

    assert error.should_retry
    assert failure.error_code == "StripeUnreachable"


def test_a_tls_failure_is_not_retried() -> None:
    # A server that answers a TLS handshake in plain HTTP: a certificate or protocol
    # problem is not a passing fault, and retrying it would only delay the answer.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_in_plain_text() -> None:
        connection = listener.accept()[0]
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        connection.close()

    thread = threading.Thread(target=answer_in_plain_text, daemon=True)
    thread.start()
    try:
        error, failure = _failure(StripeHttpClient(1, 1), f"https://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        thread.join(5)
        listener.close()

    assert not error.should_retry
    assert "TLS" in str(error)
    assert failure.error_code == "StripeUnreachable"


def test_any_other_failure_is_a_connection_error_that_names_no_header(silent_server: str) -> None:
    # An illegal header value (a key with a line break) fails inside http.client.
    client = StripeHttpClient(1, 1)
    with pytest.raises(stripe.APIConnectionError) as caught:
        client.request(
            "post", f"{silent_server}/v1/checkout/sessions", {"Authorization": "Bearer sk_test_x\nX: y"}
        )

    assert not caught.value.should_retry
    assert "sk_test_x" not in str(caught.value)
