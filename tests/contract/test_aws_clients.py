"""One contract, two AWS clients: `checkout.aws_json_client` and botocore's own.

The function calls DynamoDB, Secrets Manager and EventBridge through the JSON client
and the types in its code are botocore's (mypy_boto3), so every operation the service
uses is sent through both clients against moto and must come back the same: answers,
error codes, the modelled fields of errors, retries, and the exception classes of
connection failures. The signature is checked against botocore's signer byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.retries.standard import ExponentialBackoff

from checkout.aws_json_client import (
    DYNAMODB,
    EVENTBRIDGE,
    SECRETS_MANAGER,
    AwsJsonClient,
    ClientSettings,
    Credentials,
    JsonService,
    endpoint_url,
    sign,
)
from localdev.aws_stack import REGION, create_event_bus
from tests.conftest import Stack

TIMEOUT = 0.5
SETTINGS = ClientSettings(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, max_backoff_seconds=0.01)
SERVICES = {"dynamodb": DYNAMODB, "secretsmanager": SECRETS_MANAGER, "events": EVENTBRIDGE}
TABLE = "aws-client-contract"
BUS = "aws-client-contract-bus"


# -- the signature ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("https://dynamodb.eu-north-1.amazonaws.com/", "session-token"),
        ("https://secretsmanager.eu-north-1.amazonaws.com:443/", None),
        ("http://127.0.0.1:4566/", "token with  inner   spaces"),
        ("https://vpce-123.events.eu-north-1.vpce.amazonaws.com/proxy/path", "t"),
        ("http://[::1]:4566/", None),
    ],
)
def test_the_signature_is_botocores(url: str, token: str | None) -> None:
    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": "ä ö / +"}}}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.GetItem",
        "User-Agent": "anything: not signed",
    }
    reference = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "dynamodb",
              "eu-north-1").add_auth(reference)  # fmt: skip
    stamp = datetime.strptime(reference.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    sign(url=url, headers=headers, body=body, region="eu-north-1", service="dynamodb", now=stamp,
         credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token))  # fmt: skip

    assert headers["Authorization"] == reference.headers["Authorization"]
    assert headers.get("X-Amz-Security-Token") == reference.headers.get("X-Amz-Security-Token")


# -- configuration ------------------------------------------------------------------------------


def test_endpoints_follow_botocores_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_USE_FIPS_ENDPOINT",
                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert endpoint_url(DYNAMODB, "eu-north-1") == "https://dynamodb.eu-north-1.amazonaws.com"
    assert endpoint_url(EVENTBRIDGE, "cn-north-1") == "https://events.cn-north-1.amazonaws.com.cn"
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    assert endpoint_url(SECRETS_MANAGER, "us-east-1") == "https://secretsmanager-fips.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566/")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://localhost:4577")
    assert endpoint_url(DYNAMODB, "eu-north-1") == "http://localhost:4566"
    assert endpoint_url(SECRETS_MANAGER, "eu-north-1") == "http://localhost:4577"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert endpoint_url(DYNAMODB, "eu-north-1") == "https://dynamodb-fips.eu-north-1.amazonaws.com"


def test_without_credentials_in_the_environment_botocores_chain_supplies_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, stack: Stack
) -> None:
    # Off Lambda (the CLI on a laptop): a profile in the shared credentials file.
    credentials = tmp_path / "credentials"
    credentials.write_text("[contract]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = secret\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "contract")
    seen: list[str] = []

    def answer(handler: _Scripted) -> tuple[int, dict[str, str], bytes]:
        seen.append(handler.headers["Authorization"])
        return 200, {}, b"{}"

    server = _serve(answer)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)

    AwsJsonClient(DYNAMODB, SETTINGS).list_tables()

    assert seen and "Credential=AKIDPROFILE/" in seen[0]


def test_without_a_region_the_client_refuses_as_botocore_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(NoRegionError):
        AwsJsonClient(DYNAMODB, SETTINGS)


# -- the same answers as botocore, on moto -------------------------------------------------------


Client = Any
Clients = dict[str, Client]


def _botocore(service: str, url: str) -> Client:
    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": 4}, connect_timeout=TIMEOUT, read_timeout=TIMEOUT
    )
    return botocore.session.get_session().create_client(service, REGION, endpoint_url=url, config=config)


@pytest.fixture(scope="module")
def resources(stack: Stack) -> None:
    dynamodb = _botocore("dynamodb", stack.aws.url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    create_event_bus(BUS, stack.aws.url)


@pytest.fixture(params=["aws_json_client", "botocore"])
def clients(
    request: pytest.FixtureRequest, stack: Stack, resources: None, monkeypatch: pytest.MonkeyPatch
) -> Clients:
    if request.param == "botocore":
        # The same near-zero backoff as SETTINGS, so retried cases stay fast for both.
        monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
        return {name: _botocore(name, stack.aws.url) for name in SERVICES}
    return {name: AwsJsonClient(service, SETTINGS) for name, service in SERVICES.items()}


def _without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def _item(pk: str, sk: str = "head", **values: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **values}


def _client_error(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response = dict(caught.value.response)
    response.pop("ResponseMetadata")
    return response


def test_item_reads_and_writes_answer_alike(clients: Clients) -> None:
    db, pk = clients["dynamodb"], f"ref-{uuid.uuid4().hex}"
    assert _without_metadata(db.put_item(TableName=TABLE, Item=_item(pk, n={"N": "1"}))) == {}

    updated = db.update_item(
        TableName=TABLE,
        Key=_item(pk),
        UpdateExpression="SET n = n + :one, tags = list_append(if_not_exists(tags, :empty), :tag), m = :m",
        ExpressionAttributeValues={":one": {"N": "1"}, ":empty": {"L": []}, ":tag": {"L": [{"S": "x"}]},
                                   ":m": {"M": {"a": {"BOOL": True}, "b": {"NULL": True}}}},
        ReturnValues="ALL_NEW",
    )  # fmt: skip
    assert updated["Attributes"]["n"] == {"N": "2"}
    assert db.get_item(TableName=TABLE, Key=_item(pk), ConsistentRead=True)["Item"] == updated["Attributes"]
    assert db.get_item(TableName=TABLE, Key=_item(f"{pk}-none")).get("Item") is None
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_failed_condition_carries_the_item_like_botocore(clients: Clients) -> None:
    db, pk = clients["dynamodb"], f"ref-{uuid.uuid4().hex}"
    db.put_item(TableName=TABLE, Item=_item(pk, state={"S": "paid"}))

    refused = _client_error(
        lambda: db.update_item(
            TableName=TABLE,
            Key=_item(pk),
            UpdateExpression="SET state = :s",
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeValues={":s": {"S": "open"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    )

    assert refused["Error"]["Code"] == "ConditionalCheckFailedException"
    assert refused["Item"] == _item(pk, state={"S": "paid"})


def test_a_cancelled_transaction_carries_its_reasons_like_botocore(clients: Clients) -> None:
    db, pk = clients["dynamodb"], f"ref-{uuid.uuid4().hex}"
    db.put_item(TableName=TABLE, Item=_item(pk))

    refused = _client_error(
        lambda: db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item(pk, "s-1")}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item(pk),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    )

    assert refused["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in refused["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert db.get_item(TableName=TABLE, Key=_item(pk, "s-1")).get("Item") is None


def test_batch_transact_and_query_reads_answer_alike(clients: Clients) -> None:
    db, pk = clients["dynamodb"], f"ref-{uuid.uuid4().hex}"
    db.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item(pk, f"s-{n}", n={"N": str(n)})}} for n in range(3)
        ]
    )
    keys = [_item(pk, f"s-{n}") for n in range(3)]

    batch = db.batch_get_item(RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}})
    transact = db.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": k}} for k in keys])
    query = db.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":s": {"S": "s-"}},
        ScanIndexForward=False,
        Limit=2,
    )

    assert sorted(i["n"]["N"] for i in batch["Responses"][TABLE]) == ["0", "1", "2"]
    assert batch["UnprocessedKeys"] == {}
    assert [r["Item"]["n"]["N"] for r in transact["Responses"]] == ["0", "1", "2"]
    assert [i["n"]["N"] for i in query["Items"]] == ["2", "1"]
    assert query["LastEvaluatedKey"] == _item(pk, "s-1")


def test_an_invalid_request_is_a_validation_error_from_aws(clients: Clients) -> None:
    refused = _client_error(
        lambda: clients["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "only half"}})
    )
    assert refused["Error"]["Code"] == "ValidationException"


def test_secrets_answer_alike(clients: Clients) -> None:
    secrets, name = clients["secretsmanager"], f"contract/{uuid.uuid4().hex}"
    secrets.create_secret(Name=name, SecretString="sk_test_contract")

    answer = secrets.get_secret_value(SecretId=name)
    missing = _client_error(lambda: secrets.get_secret_value(SecretId=f"{name}-missing"))

    assert (answer["Name"], answer["SecretString"]) == (name, "sk_test_contract")
    assert missing["Error"]["Code"] == "ResourceNotFoundException"
    assert missing["Error"]["Message"]


def test_events_answer_alike(clients: Clients) -> None:
    answer = clients["events"].put_events(
        Entries=[
            {"Source": "contract", "DetailType": "Test", "Detail": json.dumps({"a": 1}), "EventBusName": BUS}
        ]
    )
    assert answer["FailedEntryCount"] == 0
    assert len(answer["Entries"]) == 1 and answer["Entries"][0]["EventId"]


# -- retries and failures, as botocore's standard mode ---------------------------------------------


def test_throttling_is_retried_three_times_then_answered(clients: Clients, stack: Stack) -> None:
    db, pk = clients["dynamodb"], f"ref-{uuid.uuid4().hex}"
    fault = stack.aws.inject_fault("GetItem", "ProvisionedThroughputExceededException", matching=pk, count=3)

    answer = db.get_item(TableName=TABLE, Key=_item(pk))

    assert fault.fired == 3
    assert answer["ResponseMetadata"]["RetryAttempts"] == 3


def test_a_fourth_failure_is_raised_with_its_code(clients: Clients, stack: Stack) -> None:
    pk = f"ref-{uuid.uuid4().hex}"
    fault = stack.aws.inject_fault("GetItem", "InternalServerError", matching=pk, count=5)

    refused = _client_error(lambda: clients["dynamodb"].get_item(TableName=TABLE, Key=_item(pk)))

    assert fault.fired == 4
    assert refused["Error"]["Code"] == "InternalServerError"
    stack.aws.clear_faults()


def test_a_client_error_is_not_retried(clients: Clients, stack: Stack) -> None:
    pk = f"ref-{uuid.uuid4().hex}"
    fault = stack.aws.inject_fault("GetItem", "AccessDeniedException", matching=pk, count=3)

    refused = _client_error(lambda: clients["dynamodb"].get_item(TableName=TABLE, Key=_item(pk)))

    assert (fault.fired, refused["Error"]["Code"]) == (1, "AccessDeniedException")
    stack.aws.clear_faults()


def test_a_reset_connection_is_retried_then_raised_as_a_connection_error(
    clients: Clients, stack: Stack
) -> None:
    pk = f"ref-{uuid.uuid4().hex}"
    fault = stack.aws.inject_fault("GetItem", reset=True, matching=pk, count=4)

    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        clients["dynamodb"].get_item(TableName=TABLE, Key=_item(pk))

    assert fault.fired == 4


def test_a_late_answer_is_a_read_timeout(clients: Clients, stack: Stack) -> None:
    pk = f"ref-{uuid.uuid4().hex}"
    stack.aws.inject_fault("GetItem", delay=TIMEOUT + 0.3, matching=pk, count=4)

    with pytest.raises(ReadTimeoutError):
        clients["dynamodb"].get_item(TableName=TABLE, Key=_item(pk))


def test_nobody_listening_is_an_endpoint_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: closed here
    with pytest.raises(EndpointConnectionError):
        AwsJsonClient(DYNAMODB, SETTINGS).get_item(TableName=TABLE, Key=_item("x"))


# -- what moto never does: damaged answers -------------------------------------------------------


class _Scripted(BaseHTTPRequestHandler):
    answer: Callable[[_Scripted], tuple[int, dict[str, str], bytes]]

    def do_POST(self) -> None:  # http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        status, headers, body = self.answer(self)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        pass


_servers: list[ThreadingHTTPServer] = []


def _serve(answer: Callable[[_Scripted], tuple[int, dict[str, str], bytes]]) -> str:
    handler = type("Handler", (_Scripted,), {"answer": staticmethod(answer)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _servers.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def _stop_scripted_servers() -> Iterator[None]:
    yield
    while _servers:
        _servers.pop().shutdown()


def test_a_damaged_dynamodb_answer_is_retried_then_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [b'{"Item": {"pk": {"S": "damaged"}}}', b'{"Item": {"pk": {"S": "good"}}}']
    checksum = str(zlib.crc32(answers[1]))
    served: list[int] = []

    def answer(_: _Scripted) -> tuple[int, dict[str, str], bytes]:
        served.append(1)
        return 200, {"x-amz-crc32": checksum}, answers[min(len(served), 2) - 1]

    monkeypatch.setenv("AWS_ENDPOINT_URL", _serve(answer))
    client = AwsJsonClient(DYNAMODB, SETTINGS)

    assert client.get_item(TableName=TABLE, Key=_item("x"))["Item"] == {"pk": {"S": "good"}}
    assert len(served) == 2

    answers[1] = b'{"Item": {"pk": {"S": "damaged again"}}}'
    served.clear()
    with pytest.raises(ChecksumError):
        client.get_item(TableName=TABLE, Key=_item("x"))
    assert len(served) == 4


def test_a_proxys_html_error_page_is_a_client_error_with_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL", _serve(lambda _: (502, {"Content-Type": "text/html"}, b"<html>bad</html>"))
    )

    refused = _client_error(lambda: AwsJsonClient(SECRETS_MANAGER, SETTINGS).get_secret_value(SecretId="x"))

    assert refused["Error"] == {"Code": "502", "Message": ""}


def test_the_retry_quota_stops_retrying_a_service_that_keeps_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[int] = []

    def unavailable(_: _Scripted) -> tuple[int, dict[str, str], bytes]:
        served.append(1)
        return 503, {}, b"{}"

    monkeypatch.setenv("AWS_ENDPOINT_URL", _serve(unavailable))
    client = AwsJsonClient(DYNAMODB, dataclasses.replace(SETTINGS, max_backoff_seconds=0.0))

    for _ in range(60):
        with pytest.raises(ClientError):
            client.get_item(TableName=TABLE, Key=_item("x"))

    # botocore's quota: 500 units, 14 per retry: 35 retries, then every call is tried once.
    assert len(served) == 60 + 35


def test_every_failure_is_a_botocore_error_the_adapters_already_handle() -> None:
    assert issubclass(ChecksumError, BotoCoreError)
    assert issubclass(ReadTimeoutError, BotoCoreError)
    assert JsonService("x", "Some Service", "X", "1.1").endpoint_variable == "AWS_ENDPOINT_URL_SOME_SERVICE"


def test_an_answer_that_is_not_a_json_object_is_retried_then_a_botocore_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[int] = []

    def garbled(_: _Scripted) -> tuple[int, dict[str, str], bytes]:
        served.append(1)
        return 200, {}, [b"\xff\xfe not json", b"null", b'{"Item": {}}'][min(len(served), 3) - 1]

    monkeypatch.setenv("AWS_ENDPOINT_URL", _serve(garbled))
    client = AwsJsonClient(DYNAMODB, SETTINGS)

    assert client.get_item(TableName=TABLE, Key=_item("x"))["Item"] == {}
    assert len(served) == 3

    monkeypatch.setenv("AWS_ENDPOINT_URL", _serve(lambda _: (200, {"x-amz-crc32": "not a number"}, b"{}")))
    with pytest.raises(BotoCoreError):
        AwsJsonClient(DYNAMODB, SETTINGS).get_item(TableName=TABLE, Key=_item("x"))


def test_botocores_other_client_attributes_are_not_operations() -> None:
    client = AwsJsonClient(DYNAMODB, SETTINGS)
    for name in ("exceptions", "meta", "close", "get_paginator", "get_waiter"):
        with pytest.raises(AttributeError):
            getattr(client, name)
