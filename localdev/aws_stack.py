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
DynamoDB) and record each call in a `CallLog`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localdev.remote_calls import DYNAMODB, SECRETS_MANAGER, CallLog, hold_until

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
FUNCTION = "CheckoutFunction"
REGION = "eu-north-1"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (`!Ref X`) as their long form (`{"Ref": X}`)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as plain data."""
    with path.open(encoding="utf-8") as stream:
        data: dict[str, Any] = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    return data


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

    def start(self, port: int = 0, host: str = "127.0.0.1") -> LocalAws:
        """Serve in a background thread; `port=0` picks a free port. Returns self."""
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialised(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            started = time.perf_counter()
            with lock:
                body = list(app(environ, start_response))
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
