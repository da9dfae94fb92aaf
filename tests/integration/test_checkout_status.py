"""POST /payment/stripe/v1/checkout/status through the real handler, moto and the emulator."""

from __future__ import annotations

from tests.conftest import Api, Company, Stack, onboard
from tests.integration.test_checkout_api import assert_error_body

STATUS = "/payment/stripe/v1/checkout/status"


def status(api: Api, company: Company, session_id: str, path: str = STATUS) -> tuple[int, dict[str, str]]:
    reply = api.send("POST", path, {"CompanyId": company.company_id, "SessionId": session_id})
    return reply.status, reply.json


def test_an_open_session_is_open_and_unpaid(api: Api, company: Company) -> None:
    session_id = api.post(company.request("booking-st-1")).json["SessionId"]

    assert status(api, company, session_id) == (
        200,
        {"Status": "open", "PaymentStatus": "unpaid", "InternalReferenceId": "booking-st-1"},
    )
    assert status(api, company, session_id, f"{STATUS}.json")[0] == 200


def test_a_payment_whose_webhook_never_came_is_learned_from_stripe_and_recorded(
    api: Api, company: Company, stack: Stack
) -> None:
    session_id = api.post(company.request("booking-st-2")).json["SessionId"]
    stack.emulator.complete(session_id)  # paid at Stripe; the service has not heard

    code, body = status(api, company, session_id)

    assert code == 200
    assert (body["Status"], body["PaymentStatus"]) == ("complete", "paid")
    record = company.sessions("booking-st-2")
    assert record["payment_state"] == "paid"
    assert record["paid_session_id"] == session_id
    creates_before = [r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions"]
    assert_error_body(api.post(company.request("booking-st-2")), 409, "AlreadyPaid")
    creates_after = [r for r in stack.emulator.requests() if r.path == "/v1/checkout/sessions"]
    assert len(creates_after) == len(creates_before)  # known paid: Stripe sees no create


def test_a_settled_session_answers_from_the_registry_without_asking_stripe(
    api: Api, company: Company, stack: Stack
) -> None:
    first = api.post(company.request("booking-st-3")).json["SessionId"]
    api.post(company.request("booking-st-3"))  # expires the first
    requests_before = len(stack.emulator.requests())

    assert status(api, company, first) == (
        200,
        {"Status": "expired", "PaymentStatus": "unpaid", "InternalReferenceId": "booking-st-3"},
    )
    assert len(stack.emulator.requests()) == requests_before


def test_another_companys_session_is_not_found(api: Api, company: Company) -> None:
    session_id = api.post(company.request("booking-st-4")).json["SessionId"]
    other = onboard()

    reply = api.send("POST", STATUS, {"CompanyId": other.company_id, "SessionId": session_id})

    assert_error_body(reply, 404, "NotFound")
    unknown = api.send("POST", STATUS, {"CompanyId": company.company_id, "SessionId": "cs_test_nobody"})
    assert_error_body(unknown, 404, "NotFound")
    assert unknown.json == reply.json


def test_a_malformed_status_request_names_the_field(api: Api, company: Company) -> None:
    reply = api.send("POST", STATUS, {"CompanyId": company.company_id, "SessionId": "pi_123"})

    assert_error_body(reply, 400, "Predicate", "SessionId")
