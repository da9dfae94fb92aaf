"""Local stand-ins for DynamoDB, Secrets Manager and API Gateway's keys: moto's server,
tables from template.yaml.

The tables are created from the `AWS::DynamoDB::Table` resources of `template.yaml`,
matched to the configuration variables that name them in the function's environment
(`COMPANIES_TABLE_NAME: !Ref CompaniesTable`), so a key-schema change in the template
reaches the tests and the local API, and code that disagrees with it fails.

moto's own threaded server runs requests concurrently without a lock, so two
conditional writes racing on one item can both pass their condition, which real
DynamoDB never allows. This server serialises requests through one lock, so
conditional writes are atomic as they are in DynamoDB.

For the benchmark it can also give every call a latency (at least that long per call,
slept after the lock is released, so concurrent calls overlap as they do against real
DynamoDB) and record each call in a `CallLog`. For the fault tests it answers chosen
calls the way a bad day in AWS does (`inject_fault`): an error (5xx, throttling, access
denied), an answer that comes too late, a connection reset before the call is served,
or one served and then lost on the way back.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localdev.cfn_template import load_template
from localdev.remote_calls import DYNAMODB, SECRETS_MANAGER, CallLog, hold_until

FUNCTION = "CheckoutFunction"
REGION = "eu-north-1"


def table_definitions(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """CreateTable arguments (without TableName) by the environment variable naming the table."""
    template = template or load_template()
    resources = template["Resources"]
    variables = resources[FUNCTION]["Properties"]["Environment"]["Variables"]
    definitions: dict[str, dict[str, Any]] = {}
    for variable, value in variables.items():
        if not (isinstance(value, dict) and "Ref" in value):
            continue
        resource = resources.get(value["Ref"], {})
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        definition: dict[str, Any] = {
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "GlobalSecondaryIndexes" in props:
            definition["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        definitions[variable] = definition
    return definitions


def create_tables(table_names: dict[str, str], endpoint_url: str | None = None) -> None:
    """Create every table of the template, named as `table_names` (variable -> name) says."""
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint_url)
    for variable, definition in table_definitions().items():
        client.create_table(TableName=table_names[variable], **definition)


def create_usage_plan(endpoint_url: str | None = None, name: str = "stripe-checkout-dev") -> str:
    """A usage plan standing in for the template's, for `checkout-admin apikey create`."""
    client = boto3.client("apigateway", region_name=REGION, endpoint_url=endpoint_url)
    return client.create_usage_plan(name=name, throttle={"rateLimit": 20.0, "burstLimit": 40})["id"]


def api_key_id(value: str, endpoint_url: str | None = None) -> str | None:
    """The id of the enabled API key whose value is `value`, as API Gateway resolves `x-api-key`."""
    client = boto3.client("apigateway", region_name=REGION, endpoint_url=endpoint_url)
    for page in client.get_paginator("get_api_keys").paginate(includeValues=True):
        for key in page.get("items", []):
            if key.get("value") == value and key.get("enabled"):
                return key.get("id")
    return None


def create_event_bus(name: str, endpoint_url: str | None = None) -> None:
    """The EventBridge bus booking events go to, as the template creates it."""
    boto3.client("events", region_name=REGION, endpoint_url=endpoint_url).create_event_bus(Name=name)


def capture_bus(bus_name: str, queue_name: str, endpoint_url: str | None = None) -> str:
    """Route every booking event on the bus to a new SQS queue; its URL.

    What a consumer does with its own rule; tests read the queue to see what was published.
    """
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
    events = boto3.client("events", region_name=REGION, endpoint_url=endpoint_url)
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name=f"{queue_name}-all", EventBusName=bus_name, EventPattern='{"source":["stripe-checkout"]}'
    )
    events.put_targets(
        Rule=f"{queue_name}-all", EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    return str(queue_url)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _operation(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, operation) of a JSON-protocol call: `X-Amz-Target: DynamoDB_20120810.GetItem`."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    prefix, _, operation = target.partition(".")
    if prefix.startswith("DynamoDB"):
        return DYNAMODB, operation
    if prefix == "secretsmanager":
        return SECRETS_MANAGER, operation
    return "AWS", target or str(environ.get("PATH_INFO", ""))


# HTTP status of the errors `inject_fault` can answer with, as AWS answers them.
AWS_ERRORS = {
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "ThrottlingException": 400,
    "ProvisionedThroughputExceededException": 400,
    "AccessDeniedException": 400,
    "UnrecognizedClientException": 400,
}


@dataclass
class AwsFault:
    """An injected fault; `fired` counts the calls it answered."""

    operation: str
    error: str | None
    reset: bool
    after: bool
    delay: float
    matching: re.Pattern[str] | None
    remaining: int
    fired: int = 0


class LocalAws:
    """moto's DynamoDB, Secrets Manager and API Gateway over HTTP on 127.0.0.1, one request at a time.

    Every call takes at least `latency` seconds (may be changed while serving; moto's
    own work counts toward it, the rest is slept outside the lock); `calls` records
    every call answered.
    """

    def __init__(self, *, latency: float = 0.0, calls: CallLog | None = None) -> None:
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.latency = latency
        self.calls = calls
        self._faults: list[AwsFault] = []
        self._faults_lock = threading.Lock()

    def inject_fault(
        self,
        operation: str,
        error: str | None = None,
        *,
        reset: bool = False,
        after: bool = False,
        delay: float = 0.0,
        matching: str | None = None,
        count: int = 1,
    ) -> AwsFault:
        """Answer the next `count` calls of `operation` (`UpdateItem`, `GetSecretValue`, ...)
        whose request body matches the regular expression `matching` (any, if None) badly.

        `error` answers with that AWS error (see AWS_ERRORS); `reset` closes the connection
        without an answer; `delay` waits that long (past the client's timeout, it is a
        timeout). `after=True` serves the call first, so the fault hits the answer: the
        write happened, the caller cannot know. Without `after`, an error or a reset means
        the call never happened, and a delay comes before it is served (late, but served).
        """
        pattern = re.compile(matching, re.DOTALL) if matching else None
        fault = AwsFault(operation, error, reset, after, delay, pattern, count)
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet."""
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, operation: str, body: str) -> AwsFault | None:
        with self._faults_lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and fault.operation == operation
                    and (fault.matching is None or fault.matching.search(body))
                ):
                    fault.remaining -= 1
                    fault.fired += 1
                    return fault
        return None

    def start(self, port: int = 0, host: str = "127.0.0.1") -> LocalAws:
        """Serve in a background thread; `port=0` picks a free port. Returns self."""
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serve(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            with lock:
                return list(app(environ, start_response))

        def serialised(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            started = time.perf_counter()
            fault = None
            if self._faults:
                raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(raw)
                fault = self._take_fault(_operation(environ)[1], raw.decode("utf-8", "replace"))
            if fault is None:
                body = serve(environ, start_response)
            else:
                body = self._faulty(fault, environ, start_response, serve)
            hold_until(started, self.latency)
            if self.calls is not None:
                self.calls.record(*_operation(environ), started, time.perf_counter())
            return body

        self._server = make_server(
            "127.0.0.1", port, serialised, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-aws", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @staticmethod
    def _faulty(fault: AwsFault, environ: dict[str, Any], start_response: Any, serve: Any) -> list[bytes]:
        served: list[Any] = []

        def keep(status: str, headers: Any, exc_info: Any = None) -> None:
            served.extend((status, headers))

        body: list[bytes] = serve(environ, keep) if fault.after else []
        if fault.delay:
            time.sleep(fault.delay)
        if fault.reset:
            connection: socket.socket = environ["werkzeug.socket"]
            connection.shutdown(socket.SHUT_RDWR)
            connection.close()
            return []
        if fault.error is None:  # only late: the answer, now
            if not fault.after:
                return serve(environ, start_response)  # type: ignore[no-any-return]
            start_response(*served)
            return body
        status = AWS_ERRORS[fault.error]
        text = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{fault.error}", "message": "Injected fault"}
        )
        start_response(
            f"{status} Injected",
            [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", "fault")],
        )
        return [text.encode()]


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """Environment that points boto3 (and so the function and checkout-admin) at `endpoint_url`."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
