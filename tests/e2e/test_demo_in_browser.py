"""The demo booking frontend of `./dev run`, end to end in headless Chromium.

A payer picks articles at /demo, pays on the emulator's Checkout page (hosted) or in the
form mounted in the page (embedded), or cancels, and lands on the demo's confirmation or
cancel page. Each test checks what the page shows and what the session registry holds
(through `checkout-admin sessions`, as an operator would look).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import LocalApiProcess
from tests.e2e.conftest import Screenshots

CONFIRMED = "Booking confirmed — paid"


def _wait[T](browser: WebDriver, condition: Callable[[WebDriver], T], what: str, timeout: float = 20) -> T:
    try:
        # A page that re-renders (a form post answered) leaves stale elements behind: look again.
        waiting = WebDriverWait(browser, timeout, 0.1, ignored_exceptions=(StaleElementReferenceException,))
        return waiting.until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; at {browser.current_url}") from None


def _text(browser: WebDriver, selector: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text


def _open_demo(browser: WebDriver, local_api: LocalApiProcess, booking: str | None = None) -> str:
    """Open the booking page; returns the booking reference it shows."""
    base = local_api.url("Checkout API on")
    browser.get(f"{base}/demo" + (f"?booking={booking}" if booking else ""))
    return _demo_ready(browser)


def _demo_ready(browser: WebDriver) -> str:
    """Wait until the booking page's script has run; returns the booking reference it shows."""
    _wait(
        browser,
        lambda b: (
            urlsplit(b.current_url).path == "/demo"
            and b.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
        ),
        "the demo page",
    )
    return _text(browser, "#booking-ref")


def _choose(browser: WebDriver, quantities: dict[str, int]) -> None:
    for article, quantity in quantities.items():
        field = browser.find_element(By.ID, f"qty-{article}")
        field.clear()
        field.send_keys(str(quantity))


def _on_emulator_page(browser: WebDriver, local_api: LocalApiProcess) -> str:
    """Wait for the hosted Checkout page; returns its session id."""
    emulator = local_api.url("emulator at")
    _wait(browser, lambda b: b.current_url.startswith(f"{emulator}/c/pay/"), "the emulator's Checkout page")
    _wait(browser, lambda b: b.find_elements(By.ID, "pay-card"), "the Checkout page's pay button")
    return urlsplit(browser.current_url).path.rsplit("/", 1)[1]


def _on_page(browser: WebDriver, local_api: LocalApiProcess, path: str) -> dict[str, list[str]]:
    base = local_api.url("Checkout API on")
    _wait(browser, lambda b: urlsplit(b.current_url).path == path and b.current_url.startswith(base), path)
    return parse_qs(urlsplit(browser.current_url).query)


def _status_shown(browser: WebDriver, *states: str) -> str:
    """Wait until the confirmation page shows one of `states`; returns its title."""

    def shown(b: WebDriver) -> str | None:
        card = b.find_element(By.ID, "status-card")
        state = card.get_attribute("data-state")
        if state == "error":
            raise AssertionError(f"the confirmation page shows an error: {_text(b, '#status-detail')}")
        return _text(b, "#status-title") if state in states else None

    title = _wait(browser, shown, f"the confirmation page to show {states}", timeout=30)
    assert title is not None  # WebDriverWait waits past None
    return title


def _registry(local_api: LocalApiProcess, reference: str) -> dict[str, Any]:
    return local_api.admin(
        "sessions", "--company-id", "6f2b0d4e-5c1a-4a8e-9a51-2f3c8d9e7b10", "--reference", reference
    )


def _registry_until(
    local_api: LocalApiProcess,
    reference: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 15,
) -> dict[str, Any]:
    """The registry's record once `condition` holds (webhooks arrive a moment after the payer)."""
    deadline = time.monotonic() + timeout
    while True:
        record = _registry(local_api, reference)
        if condition(record) or time.monotonic() > deadline:
            return record
        time.sleep(0.25)


def _states(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(session id, the registry's state of it) for each session of the reference, oldest first."""
    return [(s["session_id"], s["state"]) for s in record["sessions"]]


def _paid(session_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda record: record["paid_session_id"] == session_id


def _error_shown(browser: WebDriver) -> str:
    return _wait(browser, lambda b: b.find_element(By.ID, "error").text, "the error message")


def test_hosted_payment_by_card_confirms_the_booking(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    reference = _open_demo(browser, local_api)
    _choose(browser, {"1-42": 1, "1-43": 2})
    assert _text(browser, "#total").replace("\u00a0", " ") == "750,00 kr"
    screenshot("booking-page")

    browser.find_element(By.ID, "pay-hosted").click()
    session_id = _on_emulator_page(browser, local_api)
    page = browser.find_element(By.TAG_NAME, "body").text
    screenshot("hosted-checkout-page")
    cancel = urlsplit(browser.find_element(By.ID, "cancel").get_attribute("href") or "")

    assert "Haircut 45 min" in page and "Beard trim" in page
    assert re.search(r"750[.,]00", page) and "SEK" in page.upper()
    assert cancel.path == "/demo/cancelled" and parse_qs(cancel.query)["booking"] == [reference]

    browser.find_element(By.ID, "pay-card").click()
    query = _on_page(browser, local_api, "/demo/confirmed")
    title = _status_shown(browser, "confirmed")
    screenshot("confirmation-page")

    assert query["session_id"] == [session_id] and query["booking"] == [reference]
    assert title == CONFIRMED
    assert _text(browser, "#booking-ref") == reference
    record = _registry_until(local_api, reference, _paid(session_id))
    assert record["payment_state"] == "paid" and record["paid_session_id"] == session_id
    assert _states(record) == [(session_id, "paid")]

    # The same booking cannot be paid twice: the service answers 409 AlreadyPaid.
    _open_demo(browser, local_api, booking=reference)
    browser.find_element(By.ID, "pay-hosted").click()
    error = _error_shown(browser)
    screenshot("already-paid")
    assert "AlreadyPaid" in error
    assert _states(_registry(local_api, reference)) == [(session_id, "paid")]


def test_hosted_cancel_keeps_the_booking_unpaid_and_paying_again_replaces_the_session(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    reference = _open_demo(browser, local_api)
    browser.find_element(By.ID, "pay-hosted").click()
    first = _on_emulator_page(browser, local_api)

    browser.find_element(By.ID, "cancel").click()
    _on_page(browser, local_api, "/demo/cancelled")
    screenshot("cancel-page")

    assert _text(browser, "#status-title") == "Payment cancelled"
    assert reference in _text(browser, "#status-detail")
    record = _registry(local_api, reference)
    assert record["payment_state"] == "payable"
    assert _states(record) == [(first, "open")] and record["current_session_id"] == first

    browser.find_element(By.ID, "retry").click()
    assert _demo_ready(browser) == reference
    browser.find_element(By.ID, "pay-hosted").click()
    second = _on_emulator_page(browser, local_api)
    record = _registry(local_api, reference)
    assert second != first
    assert _states(record) == [(first, "expired"), (second, "open")]
    assert record["current_session_id"] == second and record["open_session_ids"] == [second]

    browser.find_element(By.ID, "pay-card").click()
    _on_page(browser, local_api, "/demo/confirmed")
    assert _status_shown(browser, "confirmed") == CONFIRMED
    screenshot("confirmation-page")
    record = _registry_until(local_api, reference, _paid(second))
    assert record["payment_state"] == "paid"
    assert _states(record) == [(first, "expired"), (second, "paid")]


def test_delayed_payment_shows_processing_until_it_settles(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    reference = _open_demo(browser, local_api)
    browser.find_element(By.ID, "pay-hosted").click()
    session_id = _on_emulator_page(browser, local_api)
    pay_page = browser.current_url

    browser.find_element(By.ID, "pay-delayed").click()
    _on_page(browser, local_api, "/demo/confirmed")
    confirmation = browser.current_url
    assert _status_shown(browser, "processing") == "Payment processing"
    screenshot("payment-processing")
    record = _registry_until(local_api, reference, lambda r: r["payment_state"] == "processing")
    assert record["payment_state"] == "processing" and record["processing_session_id"] == session_id
    assert _states(record) == [(session_id, "processing")]

    # While it settles, the booking cannot be paid again: 409 PaymentProcessing.
    _open_demo(browser, local_api, booking=reference)
    browser.find_element(By.ID, "pay-hosted").click()
    assert "PaymentProcessing" in _error_shown(browser)

    browser.get(pay_page)
    _wait(browser, lambda b: b.find_elements(By.ID, "settle-succeeded"), "the settle button")
    screenshot("settle-on-emulator")
    browser.find_element(By.ID, "settle-succeeded").click()
    # The bank's answer is a form post: let it finish before leaving the page.
    _wait(browser, lambda b: _text(b, "#payment-status") == "paid", "the emulator to settle the payment")
    browser.get(confirmation)
    assert _status_shown(browser, "confirmed") == CONFIRMED
    screenshot("confirmation-page")
    record = _registry_until(local_api, reference, _paid(session_id))
    assert record["payment_state"] == "paid" and _states(record) == [(session_id, "paid")]


def _embedded_form(browser: WebDriver) -> None:
    """Wait until Stripe.js (here the emulator's stand-in) has mounted its iframe."""

    def mounted(b: WebDriver) -> bool:
        error = b.find_element(By.ID, "error")
        if error.is_displayed():
            raise AssertionError(f"the demo page shows an error: {error.text}")
        return bool(b.find_elements(By.CSS_SELECTOR, "#checkout iframe"))

    _wait(browser, mounted, "the embedded checkout form")


def test_embedded_payment_by_card_confirms_the_booking(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    reference = _open_demo(browser, local_api)
    _choose(browser, {"1-42": 0, "2-7": 1})
    browser.find_element(By.ID, "pay-embedded").click()
    _embedded_form(browser)
    screenshot("embedded-checkout")
    [session] = _registry(local_api, reference)["sessions"]
    assert session["ui_mode"] == "embedded" and session["state"] == "open"

    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "#checkout iframe"))
    _wait(browser, lambda b: b.find_elements(By.ID, "pay-card"), "the embedded form's pay button")
    browser.find_element(By.ID, "pay-card").click()
    browser.switch_to.default_content()
    query = _on_page(browser, local_api, "/demo/confirmed")
    assert _status_shown(browser, "confirmed") == CONFIRMED
    screenshot("confirmation-page")

    assert query["session_id"] == [session["session_id"]]
    record = _registry_until(local_api, reference, _paid(session["session_id"]))
    assert record["payment_state"] == "paid" and _states(record) == [(session["session_id"], "paid")]


def test_embedded_cancel_keeps_the_booking_unpaid(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    reference = _open_demo(browser, local_api)
    browser.find_element(By.ID, "pay-embedded").click()
    _embedded_form(browser)

    browser.find_element(By.ID, "cancel-embedded").click()
    _on_page(browser, local_api, "/demo/cancelled")
    screenshot("cancel-page")

    assert _text(browser, "#status-title") == "Payment cancelled"
    record = _registry(local_api, reference)
    assert record["payment_state"] == "payable"
    assert [state for _, state in _states(record)] == ["open"]


def test_swagger_try_it_out_with_the_example_request_succeeds(
    browser: WebDriver, local_api: LocalApiProcess, screenshot: Screenshots
) -> None:
    browser.get(f"{local_api.url('Checkout API on')}/docs")
    _wait(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-post"),
        "Swagger UI to load the document",
    )
    browser.find_element(By.CSS_SELECTOR, ".opblock-post .opblock-summary").click()
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".try-out__btn"), "the Try it out button")
    browser.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    body = browser.find_element(By.CSS_SELECTOR, "textarea.body-param__text").get_attribute("value") or ""
    browser.find_element(By.CSS_SELECTOR, ".execute").click()

    cell = ".live-responses-table tbody .response-col_status"
    status = _wait(
        browser, lambda b: [e.text for e in b.find_elements(By.CSS_SELECTOR, cell)], "the response"
    )
    browser.execute_script(
        "arguments[0].scrollIntoView()", browser.find_element(By.CSS_SELECTOR, ".live-responses-table")
    )
    screenshot("swagger-try-it-out")
    assert '"CountryCode": "SE"' in body and '"ArticleId": 42' in body
    assert status[0].startswith("200"), status
