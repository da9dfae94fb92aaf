"""Property-based: hostile bodies, headers, query strings, paths and API Gateway events.

Generated with hypothesis and sent through the real handler against moto and the Stripe
emulator. Whatever is sent: no answer is a 5xx; every 4xx carries the contract's error
body; an answer stays far below Lambda's 6 MB; a refused request wrote nothing to
DynamoDB and asked Stripe for nothing (no lease, no pending attempt, no session); an
accepted one leaves its reference satisfying the invariant. The webhook receiver gets
hostile deliveries too, signed and not. Each test asserts how many inputs it ran;
together 1,200 per run (docs/reliability.md).
"""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdev.apigw import LocalContext, rest_event
from localdev.emulator_webhooks import signature_header
from localdev.remote_calls import DYNAMODB, CallLog
from tests.conftest import (
    BOUND_KEYS,
    ROUTE,
    SITE,
    Api,
    Company,
    Reply,
    Stack,
    admin,
    assert_invariant,
    onboard,
)

BODY_EXAMPLES = 500
REQUEST_EXAMPLES = 300
EVENT_EXAMPLES = 250
WEBHOOK_EXAMPLES = 150
WEBHOOK_SECRET = "whsec_hostileInputSecret0001"
MAX_ANSWER_BYTES = 1024 * 1024
# Writes to the registry. (An Idempotency-Key's in-progress record is a PutItem that a
# failing request deletes again, so PutItem and DeleteItem are no sign of state left.)
WRITES = {"UpdateItem", "TransactWriteItems", "BatchWriteItem"}
ROUTES = [
    ROUTE,
    f"{ROUTE}.json",
    "/Payment/Stripe/V1/Checkout.JSON",
    "/api/StripeV1CreateCheckout",
    "/json/reply/stripev1createcheckout",
    "/payment/stripe/v1/checkout/status",
    "/api/StripeV1GetCheckoutStatus",
    "/api/NoSuchOperation",
    "/types/typescript",
    "/",
]


def runs(examples: int) -> settings:
    """Exactly `examples` generated inputs, however slow each is; nothing kept between runs."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- JSON as an attacker writes it --------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text sent as it is: numbers JSON cannot hold, NaN, broken syntax."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as a list of pairs, so keys can repeat."""

    pairs: tuple[tuple[str, Any], ...]


def dump(value: Any, ascii_escapes: bool = True) -> str:
    """The JSON text of a value built from Raw, Obj, lists and scalars."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return (
            "{" + ",".join(f"{dump(k, ascii_escapes)}:{dump(v, ascii_escapes)}" for k, v in value.pairs) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_escapes) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_escapes)


ODD_TEXT = [
    "\ud800",
    "\udfff",
    "\ud83d",
    "\x00",
    "\u202e",
    "\u200f",
    "\u200b",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "\ufdd0",
    "\U0010ffff",
    "\u0301",
    "\U0001d518\U0001d52b\U0001d526",  # astral-plane letters (surrogate pairs in UTF-16)
    "\\",
    '"',
    "\n\r\t",
    "%00",
    "%ED%A0%80",
    "../..",
    "{CHECKOUT_SESSION_ID}",
]
any_char = st.characters(exclude_categories=[])
texts = st.one_of(
    st.text(any_char, max_size=30),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=8), st.sampled_from(ODD_TEXT), st.text(max_size=8)),
    st.integers(0, 3000).map(lambda n: "r" * n),
    st.sampled_from(["", " ", "hosted", "EMBEDDED", "se", "SE", "xx", str(uuid.UUID(int=0)), "true"]),
)
numbers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, -1, 1, 999, 1000, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [Raw("9" * 40), Raw("9" * 5000), Raw("-0"), Raw("1e999"), Raw("NaN"), Raw("Infinity"), Raw("0x10")]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(texts, children), max_size=4).map(lambda pairs: Obj(tuple(pairs))),
    ),
    max_leaves=12,
)
nesting = st.integers(1, 40).flatmap(
    lambda depth: st.sampled_from(
        [Raw("[" * depth + "1" + "]" * depth), Raw('{"a":' * depth + "1" + "}" * depth)]
    )
)


@dataclass
class Hostile:
    """Everything the tests need: the handler, the company, the stand-ins and a call log."""

    api: Api
    company: Company
    stack: Stack
    calls: CallLog


@pytest.fixture(scope="module")
def hostile_company(stack: Stack) -> Company:
    return onboard(prefixes=(f"{SITE}/",))


def api_keys(company: Company) -> st.SearchStrategy[str | None]:
    """Mostly the key API Gateway accepted for the company; sometimes none or another."""
    bound = BOUND_KEYS[company.company_id]
    return st.sampled_from([bound] * 8 + [None, "another-companys-key"])


@pytest.fixture
def hostile(api: Api, hostile_company: Company, stack: Stack) -> Iterator[Hostile]:
    calls = CallLog()
    before, stack.aws.calls = stack.aws.calls, calls
    yield Hostile(api, hostile_company, stack, calls)
    stack.aws.calls = before


def request_bodies(company: Company) -> st.SearchStrategy[Any]:
    """A valid request, bent: fields replaced, recased, repeated, added, articles multiplied."""
    article = st.lists(
        st.tuples(
            st.sampled_from(["ArticleId", "articleid", "ArticleTypeId", "Quantity", "QUANTITY", "Other"]),
            st.one_of(st.just(42), st.just(1), json_values),
        ),
        max_size=5,
    ).map(lambda pairs: Obj((("ArticleId", 42), ("ArticleTypeId", 1), *pairs)))
    articles = st.one_of(
        st.lists(article, max_size=3),
        st.integers(95, 3000).map(lambda n: [Obj((("ArticleId", 42), ("ArticleTypeId", 1)))] * n),
        json_values,
    )

    @st.composite
    def body(draw: st.DrawFn) -> Any:
        reference = f"hostile-{uuid.uuid4().hex[:10]}"
        fields: dict[str, Any] = {
            "CompanyId": company.company_id,
            "CountryCode": "SE",
            "Articles": [Obj((("ArticleId", 42), ("ArticleTypeId", 1), ("Quantity", 1)))],
            "InternalReferenceId": reference,
            "ConfirmationUrl": f"{SITE}/booking/confirmed",
            "CancelUrl": f"{SITE}/booking/cancelled",
            "UiMode": "hosted",
        }
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
            if name == "Articles":
                fields[name] = draw(articles)
            elif name in {"InternalReferenceId", "ConfirmationUrl", "CancelUrl"} and draw(st.booleans()):
                fields[name] = fields[name] + draw(texts)  # still ours, with something odd inside
            else:
                fields[name] = draw(json_values)
        pairs = [(draw(st.sampled_from([k, k.lower(), k.upper()])), v) for k, v in fields.items()]
        pairs += draw(
            st.lists(st.tuples(st.one_of(texts, st.sampled_from(sorted(fields))), json_values), max_size=3)
        )
        return Obj(tuple(pairs))

    return body()


def bodies(company: Company) -> st.SearchStrategy[str]:
    """Body text: a bent request, any JSON value, nesting, or any text at all."""
    bent = st.tuples(request_bodies(company), st.booleans()).map(lambda b: dump(*b))
    return st.one_of(
        bent,
        bent,
        bent,
        bent,
        st.tuples(json_values, st.booleans()).map(lambda b: dump(*b)),
        nesting.map(dump),
        st.text(any_char, max_size=60),
        st.just(dump(Obj((("a", 1), ("a", 2))))),
    )


# -- checks ------------------------------------------------------------------------------


def check(h: Hostile, event: dict[str, Any]) -> Reply:
    """Send one event and assert what must hold whatever it was."""
    mark = h.calls.mark()
    posts_before = sum(1 for r in h.stack.emulator.requests() if r.method == "POST")
    reply = h.api.invoke(event)
    assert reply.status < 500, reply.text
    assert len(reply.text.encode("utf-8", "surrogatepass")) < MAX_ANSWER_BYTES
    if reply.status >= 400:
        text = reply.text
        if reply.headers.get("Content-Type", "").startswith("text/javascript"):
            text = text[text.index("(") + 1 : text.rindex(")")]
        assert text.startswith("{"), reply.text
        status = _uncased(_uncased(json.loads(text))["responsestatus"])  # in any ?jsconfig= casing
        assert status["errorcode"] and isinstance(status["errorcode"], str), reply.text
        assert status["message"] and isinstance(status["message"], str), reply.text
        assert isinstance(status.get("errors", []), list)
        writes = [c.operation for c in h.calls.since(mark) if c.service == DYNAMODB and c.operation in WRITES]
        assert writes == [], f"a refused request wrote {writes}"
        posts = sum(1 for r in h.stack.emulator.requests() if r.method == "POST")
        assert posts == posts_before, "a refused request asked Stripe for something"
    elif reply.status == 200 and reply.text.startswith('{"SessionId"'):  # a checkout was created
        session = next(
            s for s in h.stack.emulator.sessions() if s["id"] == json.loads(reply.text)["SessionId"]
        )
        assert_invariant(h.stack, h.company, session["client_reference_id"])
    return reply


def _uncased(body: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("_", "").lower(): value for key, value in body.items()}


def event_for(
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
    query: list[tuple[str, str]],
    encoding: str,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    event = rest_event(method, path, None, headers=headers, api_key_id=api_key_id)
    if body is not None and encoding != "plain":
        raw = {
            "utf-8": lambda b: b.encode("utf-8", "surrogatepass"),
            "utf-16": lambda b: b.encode("utf-16", "surrogatepass"),
            "latin-1": lambda b: b.encode("latin-1", "replace"),
        }
        if encoding == "not base64":
            event["body"] = body + "!*"
        else:
            event["body"] = base64.b64encode(raw[encoding](body)).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body
    if query:
        event["queryStringParameters"] = dict(query)
        multi: dict[str, list[str]] = {}
        for key, value in query:
            multi.setdefault(key, []).append(value)
        event["multiValueQueryStringParameters"] = multi
    return event


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
        "application/json; charset=utf-16",
    ]
)
header_maps = st.dictionaries(
    st.one_of(st.sampled_from(["Origin", "Accept", "Idempotency-Key", "X-Forwarded-Proto", "Host"]), texts),
    texts,
    max_size=4,
)
query_pairs = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(
                ["jsconfig", "callback", "format", "CompanyId", "Articles", "Quantity", "UiMode"]
            ),
            texts,
        ),
        st.one_of(texts, st.sampled_from(["tc:sc", "cb", "alert(1)", "[{ArticleId:42}]", "[" * 500, "json"])),
    ),
    max_size=4,
)


# -- the properties --------------------------------------------------------------------


def test_any_body_is_answered_without_a_5xx_and_a_refusal_leaves_nothing(hostile: Hostile) -> None:
    ran: list[int] = []

    @runs(BODY_EXAMPLES)
    @given(
        body=bodies(hostile.company),
        encoding=st.sampled_from(["plain"] * 12 + ["utf-8", "utf-16", "latin-1", "not base64"]),
        content_type=content_types,
        key=api_keys(hostile.company),
    )
    def property(body: str, encoding: str, content_type: str, key: str | None) -> None:
        ran.append(1)
        check(hostile, event_for("POST", ROUTE, body, {"Content-Type": content_type}, [], encoding, key))

    property()
    assert len(ran) >= BODY_EXAMPLES


def test_any_method_path_header_and_query_is_answered_without_a_5xx(hostile: Hostile) -> None:
    ran: list[int] = []

    @runs(REQUEST_EXAMPLES)
    @given(
        method=st.sampled_from(["POST"] * 4 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        path=st.one_of(st.sampled_from(ROUTES), texts.map(lambda t: "/" + t)),
        body=st.one_of(st.none(), bodies(hostile.company)),
        headers=header_maps,
        content_type=content_types,
        query=query_pairs,
        key=api_keys(hostile.company),
    )
    def property(
        method: str,
        path: str,
        body: str | None,
        headers: dict[str, str],
        content_type: str,
        query: list[tuple[str, str]],
        key: str | None,
    ) -> None:
        ran.append(1)
        event = event_for(method, path, body, {"Content-Type": content_type, **headers}, query, "plain", key)
        check(hostile, event)

    property()
    assert len(ran) >= REQUEST_EXAMPLES


def test_any_webhook_delivery_is_answered_without_a_5xx_and_only_a_signed_one_is_read(
    hostile: Hostile, stack: Stack
) -> None:
    module = importlib.import_module("handlers.stripe_webhook")
    admin("webhook", "put-secret", "--company-id", hostile.company.company_id, stdin=WEBHOOK_SECRET)
    ran: list[int] = []

    @runs(WEBHOOK_EXAMPLES)
    @given(
        body=st.one_of(bodies(hostile.company), st.text(any_char, max_size=80)),
        signed=st.sampled_from(["signed", "signed", "unsigned", "forged", "stale"]),
        scope=st.sampled_from([hostile.company.company_id, "connect", str(uuid.uuid4()), "x", ""]),
        encoding=st.sampled_from(["plain"] * 4 + ["utf-8", "not base64"]),
    )
    def property(body: str, signed: str, scope: str, encoding: str) -> None:
        ran.append(1)
        payload = body.encode("utf-8", "surrogatepass")
        secret = WEBHOOK_SECRET if signed != "forged" else "whsec_someoneElse"
        at = int(time.time()) - (3600 if signed == "stale" else 0)
        headers = {"Stripe-Signature": signature_header(payload, secret, at)} if signed != "unsigned" else {}
        event = event_for("POST", f"/payment/stripe/v1/webhook/{scope}", body, headers, [], encoding)
        mark = hostile.calls.mark()
        answer = module.lambda_handler(event, LocalContext())
        assert answer["statusCode"] < 500, answer
        if answer["statusCode"] >= 400:
            status = json.loads(answer["body"])["ResponseStatus"]
            assert status["ErrorCode"] and status["Message"]
            writes = [c.operation for c in hostile.calls.since(mark) if c.operation in WRITES]
            assert writes == [], f"a refused delivery wrote {writes}"

    property()
    assert len(ran) >= WEBHOOK_EXAMPLES


def test_any_shape_of_event_is_answered_without_a_5xx(hostile: Hostile) -> None:
    ran: list[int] = []
    keys = [
        "httpMethod",
        "path",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "body",
        "isBase64Encoded",
        "requestContext",
        "resource",
        "stageVariables",
    ]

    @runs(EVENT_EXAMPLES)
    @given(
        changes=st.lists(
            st.tuples(st.sampled_from(keys), st.one_of(st.just(KeyError), json_values.map(_plain))),
            max_size=3,
        ),
        body=bodies(hostile.company),
    )
    def property(changes: list[tuple[str, Any]], body: str) -> None:
        ran.append(1)
        bound = BOUND_KEYS[hostile.company.company_id]
        event = event_for("POST", ROUTE, body, {"Content-Type": "application/json"}, [], "plain", bound)
        for key, value in changes:
            if value is KeyError:
                event.pop(key, None)
            else:
                event[key] = value
        check(hostile, event)

    property()
    assert len(ran) >= EVENT_EXAMPLES


def _plain(value: Any) -> Any:
    """A generated value as the Lambda runtime would hand it over (plain JSON types)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return {str(k): _plain(v) for k, v in value.pairs}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
