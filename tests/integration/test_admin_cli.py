"""checkout-admin: onboarding, catalogue, registry view, and its errors."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid

import boto3
import pytest

from tests.conftest import STRIPE_KEY, Api, Stack, admin, onboard

CLI = [sys.executable, "-c", "import sys; from checkout.admin import main; sys.exit(main())"]


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "command",
    [[], ["company"], ["company", "put"], ["article"], ["article", "put"], ["sessions"], ["reconcile"]],
)
def test_every_command_has_help(command: list[str], stack: Stack) -> None:
    result = run(*command, "--help")

    assert result.returncode == 0
    assert "usage: checkout-admin" in result.stdout


def test_company_put_stores_settings_and_the_key_from_stdin(stack: Stack) -> None:
    company_id = str(uuid.uuid4())

    result = run(
        "company", "put", "--company-id", company_id, "--allowed-url-prefix", "https://shop.example/",
        "--confirmation-url", "https://shop.example/done", "--stripe-account", "acct_1Abc", "--stripe-secret-key-stdin",
        stdin=STRIPE_KEY + "\n",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert STRIPE_KEY not in result.stdout + result.stderr
    secrets = boto3.client("secretsmanager")
    assert (
        secrets.get_secret_value(SecretId=f"checkout/dev/stripe/{company_id}")["SecretString"] == STRIPE_KEY
    )


def test_the_key_is_never_taken_from_the_command_line(stack: Stack) -> None:
    result = run("company", "put", "--company-id", str(uuid.uuid4()), "--stripe-secret-key", STRIPE_KEY)

    assert result.returncode == 2


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["company", "put", "--company-id", "nope"], "", "not a GUID"),
        (["company", "put", "--company-id", "00000000-0000-0000-0000-000000000000"], "", "empty GUID"),
        (["company", "put", "--company-id", "{id}", "--stripe-secret-key-stdin"], "pk_test_abc", "Stripe secret key"),
        (["company", "put", "--company-id", "{id}", "--stripe-account", "acc_1"], "", "acct_"),
        (["company", "put", "--company-id", "{id}", "--allowed-url-prefix", "http://shop.example/"], "", "https"),
        (
            ["company", "put", "--company-id", "{id}", "--allowed-url-prefix", "https://a.example/",
             "--confirmation-url", "https://b.example/"],
            "",
            "not under any --allowed-url-prefix",
        ),
        (["article", "put", "--company-id", "{id}", "--article-type-id", "0", "--article-id", "1", "--name", "A",
          "--unit-amount", "1", "--currency", "SEK"], "", "greater than 0"),
        (["article", "put", "--company-id", "{id}", "--article-type-id", "1", "--article-id", "1", "--name", "A",
          "--unit-amount", "9.95", "--currency", "SEK"], "", "minor units"),
        (["article", "put", "--company-id", "{id}", "--article-type-id", "1", "--article-id", "1", "--name", "A",
          "--unit-amount", "995", "--currency", "KRONOR"], "", "currency"),
        (["reconcile", "--reference", "booking-1"], "", "--reference needs --company-id"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error_and_exit_2(
    stack: Stack, argv: list[str], stdin: str, message: str
) -> None:
    company_id = str(uuid.uuid4())

    result = run(*[a.replace("{id}", company_id) for a in argv], stdin=stdin)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_article_put_and_sessions_show_the_registry(stack: Stack) -> None:
    company_id = str(uuid.uuid4())
    admin("company", "put", "--company-id", company_id, "--stripe-secret-key-stdin", stdin=STRIPE_KEY)

    stored = admin(
        "article", "put", "--company-id", company_id, "--article-type-id", "3", "--article-id", "9",
        "--name", "Punch card", "--unit-amount", "120000", "--currency", "sek",
    )  # fmt: skip
    empty = admin("sessions", "--company-id", company_id, "--reference", "nothing-yet")

    assert stored["currency"] == "sek" and stored["unit_amount"] == 120000 and stored["active"] is True
    assert empty["sessions"] == [] and empty["current_session_id"] is None


def _read_terminal(master: int, until: bytes, timeout: float) -> bytes:
    """What the terminal shows, until `until` appears, the program closes it, or time runs out."""
    screen = b""
    deadline = time.monotonic() + timeout
    while until not in screen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the program exited and the terminal closed
            break
        if not chunk:
            break
        screen += chunk
    return screen


def test_a_key_typed_at_a_terminal_is_not_echoed(stack: Stack) -> None:
    company_id = str(uuid.uuid4())
    master, terminal = pty.openpty()
    # A new session has no controlling terminal, so getpass falls back to standard input,
    # the pseudo-terminal this test types into and reads the screen of.
    process = subprocess.Popen(
        [*CLI, "company", "put", "--company-id", company_id, "--stripe-secret-key-stdin"],
        stdin=terminal, stdout=subprocess.PIPE, stderr=terminal, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    try:
        screen = _read_terminal(master, b"Stripe secret key", timeout=30)
        os.write(master, STRIPE_KEY.encode() + b"\n\x04")
        output, _ = process.communicate(timeout=60)
        screen += _read_terminal(master, b"\0", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)

    # Booleans, so that a failure report does not print the key it is about.
    prompted, echoed = b"Stripe secret key" in screen, STRIPE_KEY.encode() in screen + output
    assert prompted, "no prompt on the terminal"
    assert not echoed, "the key was echoed"
    assert process.returncode == 0
    stored = boto3.client("secretsmanager").get_secret_value(SecretId=f"checkout/dev/stripe/{company_id}")
    assert stored["SecretString"] == STRIPE_KEY


def test_reconcile_repairs_a_lost_webhook_and_prints_what_it_did(
    stack: Stack, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_GRACE_MINUTES", "0")
    company = onboard(extra=("--refund-duplicate-payments",))
    session_id = api.post(company.request("booking-cli-rc")).json["SessionId"]
    stack.emulator.complete(session_id, deliver=False)

    report = admin("reconcile", "--company-id", company.company_id)
    again = admin("reconcile", "--company-id", company.company_id, "--reference", "booking-cli-rc")

    assert (report["repaired"], report["failed"], report["more_remains"]) == (2, 0, False)
    assert report["repairs"][0] == {
        "company_id": company.company_id,
        "reference": "booking-cli-rc",
        "what": "recorded it paid",
        "session_id": session_id,
    }
    assert (again["repaired"], again["references_checked"]) == (0, 1)
    shown = company.sessions("booking-cli-rc")
    assert shown["payment_state"] == "paid" and shown["sessions"][0]["refund_id"] is None


def test_reconcile_prints_only_its_report_on_stdout(stack: Stack) -> None:
    result = run("reconcile", "--company-id", str(uuid.uuid4()))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["repaired"] == 0
    assert "Reconcile pass done" in result.stderr
