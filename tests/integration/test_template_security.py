"""template.yaml, read as data: alarms that can fire, stages apart, a locked-down edge, least privilege.

Nothing here can be deployed (no AWS account), so the template is checked by reading
it: each test states one property of the deployed shape that a review asked for.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from fnmatch import fnmatchcase
from typing import Any

import pytest

from checkout.company_store import DynamoCompanyDirectory
from checkout.session_registry import DynamoSessionRegistry
from localdev.aws_stack import FUNCTION
from localdev.cfn_template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
# What the pseudo parameters and the stage resolve to when the tests need a value.
ACCOUNT, REGION = "123456789012", "eu-north-1"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "Stage": "prod"}


def resolve(value: Any) -> str:
    """A string, Ref or Sub resolved with PSEUDO; other references become <Name>."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return PSEUDO.get(value["Ref"], f"<{value['Ref']}>")
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text, names = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        return re.sub(
            r"\$\{([^}]+)\}",
            lambda m: (
                resolve(names[m.group(1)])
                if m.group(1) in names
                else PSEUDO.get(m.group(1), f"<{m.group(1)}>")
            ),
            text,
        )
    return json.dumps(value)


def of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- alarms that can fire ----------------------------------------------------------------


def _conditions_hold(conditions: dict[str, Any], context: dict[str, str]) -> bool:
    """Whether a statement's conditions hold for a request with `context`; an operator or
    key this does not know counts as not holding, so only what is proven passes."""
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = context.get(key)
            patterns = [resolve(e) for e in as_list(expected)]
            if actual is None:
                return False
            if operator in {"StringEquals", "ArnEquals"} and actual not in patterns:
                return False
            if operator in {"StringLike", "ArnLike"} and not any(fnmatchcase(actual, p) for p in patterns):
                return False
            if operator not in {"StringEquals", "ArnEquals", "StringLike", "ArnLike"}:
                return False
    return True


def _allows(policy: dict[str, Any], service: str, action: str, context: dict[str, str]) -> bool:
    """IAM evaluation for one service principal and action: an allow and no deny."""

    def matches(statement: dict[str, Any]) -> bool:
        principal = statement.get("Principal")
        services = (
            [resolve(s) for s in as_list(principal.get("Service", []))] if isinstance(principal, dict) else []
        )
        if principal != "*" and service not in services:
            return False
        if not any(fnmatchcase(action.lower(), resolve(a).lower()) for a in as_list(statement["Action"])):
            return False
        return _conditions_hold(statement.get("Condition", {}), context)

    statements = policy["Statement"]
    denied = any(s["Effect"] == "Deny" and matches(s) for s in statements)
    return not denied and any(s["Effect"] == "Allow" and matches(s) for s in statements)


def _topic_key(topic: dict[str, Any]) -> dict[str, Any]:
    key = topic["Properties"].get("KmsMasterKeyId")
    if key is None:
        pytest.fail("the alarm topic is not encrypted")
    if isinstance(key, str):
        pytest.fail(f"the alarm topic uses {key}, a key whose policy this template cannot grant CloudWatch")
    name = key["Ref"] if "Ref" in key else key["Fn::GetAtt"][0]
    resource: dict[str, Any] = RESOURCES[name]
    if resource["Type"] == "AWS::KMS::Alias":
        resource = RESOURCES[resource["Properties"]["TargetKeyId"]["Ref"]]
    assert resource["Type"] == "AWS::KMS::Key"
    return resource


def test_every_alarm_can_publish_to_its_topic_under_the_key_policy() -> None:
    alarms = of_type("AWS::CloudWatch::Alarm")
    topic_policies = of_type("AWS::SNS::TopicPolicy").values()

    assert alarms
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        alarm_arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{resolve(props['AlarmName'])}"
        context = {"aws:SourceArn": alarm_arn, "aws:SourceAccount": ACCOUNT}
        actions = [
            *props.get("AlarmActions", []),
            *props.get("OKActions", []),
            *props.get("InsufficientDataActions", []),
        ]
        assert actions, name
        for action in actions:
            topic = RESOURCES[action["Ref"]]
            assert topic["Type"] == "AWS::SNS::Topic", name
            key = _topic_key(topic)
            for kms_action in ("kms:Decrypt", "kms:GenerateDataKey"):
                assert _allows(
                    key["Properties"]["KeyPolicy"], "cloudwatch.amazonaws.com", kms_action, context
                ), f"{name}: the key policy does not let CloudWatch {kms_action}"
            for policy in topic_policies:
                if action in policy["Properties"]["Topics"]:
                    assert _allows(
                        policy["Properties"]["PolicyDocument"],
                        "cloudwatch.amazonaws.com",
                        "sns:Publish",
                        context,
                    ), name


def test_the_key_lets_cloudwatch_logs_encrypt_only_the_stages_log_groups() -> None:
    for name, group in of_type("AWS::Logs::LogGroup").items():
        key = RESOURCES[group["Properties"]["KmsKeyId"]["Fn::GetAtt"][0]]
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{resolve(group['Properties']['LogGroupName'])}"
        policy = key["Properties"]["KeyPolicy"]
        logs = f"logs.{REGION}.amazonaws.com"

        assert _allows(policy, logs, "kms:GenerateDataKey", {"kms:EncryptionContext:aws:logs:arn": arn}), name
        other = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/someone-else"
        assert not _allows(policy, logs, "kms:Decrypt", {"kms:EncryptionContext:aws:logs:arn": other})


# -- stages ------------------------------------------------------------------------------

NAME_PROPERTIES = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::Api": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::ApiGateway::UsagePlan": "UsagePlanName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::WAFv2::WebACL": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::Events::EventBus": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Events::Rule": "Name",
}


def test_the_stage_is_one_of_three_and_part_of_every_resource_name() -> None:
    assert PARAMETERS["Stage"]["AllowedValues"] == ["dev", "staging", "prod"]
    for name, resource in RESOURCES.items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        if prop is None:
            continue
        value = resource["Properties"].get(prop)
        assert value is not None, f"{name} has no {prop}; give it one with the stage in it"
        assert "${Stage}" in json.dumps(value) or {"Ref": "Stage"} in as_list(
            value.get("Fn::Join", [None, []])[1] if isinstance(value, dict) else value
        ), name


def test_the_stage_reaches_every_function_and_names_its_secrets() -> None:
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["STAGE"] == {"Ref": "Stage"}
    function = RESOURCES[FUNCTION]["Properties"]
    [secrets] = [
        s for s in function["Policies"][0]["Statement"] if "secretsmanager" in json.dumps(s["Action"])
    ]

    assert (
        resolve(function["Environment"]["Variables"]["STRIPE_SECRET_NAME_PREFIX"]) == "checkout/prod/stripe/"
    )
    assert resolve(secrets["Resource"]).endswith(":secret:checkout/prod/stripe/*")


def test_no_deployed_stage_accepts_requests_without_a_bound_key() -> None:
    variables = RESOURCES[FUNCTION]["Properties"]["Environment"]["Variables"]

    assert variables["ALLOW_UNBOUND_API_KEYS"] == "false"


# -- the edge: keys, throttling, logs, TLS, headers ---------------------------------------


def test_there_is_no_shared_api_key_and_keys_are_throttled_per_key() -> None:
    auth = RESOURCES["CheckoutApi"]["Properties"]["Auth"]
    [plan] = of_type("AWS::ApiGateway::UsagePlan").values()
    props = plan["Properties"]

    assert "UsagePlan" not in auth and not of_type("AWS::ApiGateway::ApiKey")
    assert props["Throttle"] == {
        "RateLimit": {"Ref": "ApiKeyRateLimit"},
        "BurstLimit": {"Ref": "ApiKeyBurstLimit"},
    }
    assert props["ApiStages"] == [{"ApiId": {"Ref": "CheckoutApi"}, "Stage": {"Ref": "CheckoutApi.Stage"}}]
    assert TEMPLATE["Outputs"]["UsagePlanId"]["Value"] == {"Ref": "CheckoutUsagePlan"}


def test_the_stage_writes_a_json_access_log_line_per_request() -> None:
    api = RESOURCES["CheckoutApi"]["Properties"]
    setting = api["AccessLogSetting"]
    line = json.loads(re.sub(r"\$context\.[\w.]+", "x", setting["Format"]))
    group = RESOURCES["ApiAccessLogGroup"]["Properties"]
    [method_settings] = api["MethodSettings"]

    assert {"requestId", "apiKeyId", "status", "responseLatencyMs", "sourceIp"} <= set(line)
    assert "${ApiAccessLogGroup}" in setting["DestinationArn"]["Fn::Sub"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"} and "KmsKeyId" in group
    assert method_settings["DataTraceEnabled"] is False and method_settings["LoggingLevel"] == "OFF"


def test_the_function_has_reserved_concurrency_from_a_parameter() -> None:
    reserved = RESOURCES[FUNCTION]["Properties"]["ReservedConcurrentExecutions"]

    assert reserved == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert (
        PARAMETERS["ReservedConcurrency"]["Type"] == "Number"
        and int(PARAMETERS["ReservedConcurrency"]["Default"]) > 0
    )


def test_a_custom_domain_takes_tls_1_2_at_least_and_closes_the_default_endpoint() -> None:
    domains = of_type("AWS::ApiGateway::DomainName")
    api = RESOURCES["CheckoutApi"]["Properties"]

    assert domains and all(d["Properties"]["SecurityPolicy"] == "TLS_1_2" for d in domains.values())
    assert all(d.get("Condition") == "HasCustomDomain" for d in domains.values())
    assert api["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasCustomDomain", True, False]}


def test_gateway_responses_carry_the_edge_headers_and_never_echo_an_origin() -> None:
    responses = RESOURCES["CheckoutApi"]["Properties"]["GatewayResponses"]

    for name, response in responses.items():
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Cache-Control"] == "'no-store'", name
        assert headers["X-Content-Type-Options"] == "'nosniff'", name
        assert headers["Vary"] == "'Origin'", name
        origin = json.dumps(headers.get("Access-Control-Allow-Origin"))
        assert "method.request" not in origin and "AllowedOrigins" in origin, name


def test_an_optional_waf_rate_limits_each_client_ip() -> None:
    [acl] = of_type("AWS::WAFv2::WebACL").values()
    [association] = of_type("AWS::WAFv2::WebACLAssociation").values()
    rates = [
        r["Statement"]["RateBasedStatement"]
        for r in acl["Properties"]["Rules"]
        if "RateBasedStatement" in r["Statement"]
    ]

    assert acl["Condition"] == association["Condition"] == "WafEnabled"
    assert PARAMETERS["EnableWaf"]["Default"] == "false"
    assert rates == [{"Limit": {"Ref": "WafRequestsPerIpPer5Minutes"}, "AggregateKeyType": "IP"}]


# -- least privilege ---------------------------------------------------------------------

_ACTIONS = {
    "get_item": "GetItem", "batch_get_item": "BatchGetItem", "put_item": "PutItem", "update_item": "UpdateItem",
    "delete_item": "DeleteItem", "query": "Query", "scan": "Scan", "batch_write_item": "BatchWriteItem",
}  # fmt: skip
_TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
# Methods only checkout-admin, the reconciler and the tests call.
OPERATOR_ONLY = {"load"}


def _dynamodb_actions(adapter: type, skip: set[str] = OPERATOR_ONLY) -> dict[str, set[str]]:
    """The DynamoDB actions the function's calls through `adapter` need, on "table" and "index"."""
    needed: dict[str, set[str]] = {"table": set(), "index": set()}
    tree = ast.parse(textwrap.dedent(inspect.getsource(adapter)))
    methods = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name not in skip]
    for method in methods:
        for call in (n for n in ast.walk(method) if isinstance(n, ast.Call)):
            func = call.func
            if not (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "_client"
            ):
                continue
            if func.attr in _ACTIONS:
                on_index = any(k.arg == "IndexName" for k in call.keywords)
                needed["index" if on_index else "table"].add(f"dynamodb:{_ACTIONS[func.attr]}")
            elif func.attr.startswith("transact_"):
                kinds = {
                    k.value
                    for n in ast.walk(method)
                    if isinstance(n, ast.Dict)
                    for k in n.keys
                    if isinstance(k, ast.Constant)
                }
                needed["table"] |= {f"dynamodb:{_TRANSACT_ITEMS[k]}" for k in kinds if k in _TRANSACT_ITEMS}
    return needed


def _granted(table: str, function: str = FUNCTION) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {"table": set(), "index": set()}
    for statement in RESOURCES[function]["Properties"]["Policies"][0]["Statement"]:
        resource = json.dumps(statement["Resource"])
        if statement["Resource"] == {"Fn::GetAtt": [table, "Arn"]}:
            granted["table"] |= set(as_list(statement["Action"]))
        elif f"${{{table}.Arn}}/index/" in resource:
            granted["index"] |= set(as_list(statement["Action"]))
    return granted


@pytest.mark.parametrize(
    ("table", "adapter"),
    [("CompaniesTable", DynamoCompanyDirectory), ("SessionsTable", DynamoSessionRegistry)],
)
def test_the_function_may_call_exactly_what_its_adapters_call(table: str, adapter: type) -> None:
    assert _granted(table) == _dynamodb_actions(adapter)


@pytest.mark.parametrize(
    ("table", "adapter"),
    [("CompaniesTable", DynamoCompanyDirectory), ("SessionsTable", DynamoSessionRegistry)],
)
def test_the_reconciler_may_call_exactly_what_its_adapters_call(table: str, adapter: type) -> None:
    # It reads whole references (`load`) besides what the checkout function does.
    assert _granted(table, "ReconcilerFunction") == _dynamodb_actions(adapter, skip=set())


def test_the_function_may_only_read_secret_values() -> None:
    statements = RESOURCES[FUNCTION]["Properties"]["Policies"][0]["Statement"]
    actions = {a for s in statements for a in as_list(s["Action"]) if a.startswith("secretsmanager:")}

    assert actions == {"secretsmanager:GetSecretValue"}
