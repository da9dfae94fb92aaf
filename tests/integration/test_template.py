"""template.yaml and the code agree: tables, key layout, handler, configuration, dependencies."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

from checkout import dynamodb_layout as layout
from checkout.operations import OPERATIONS, PREDEFINED_ROUTES
from localdev.aws_stack import FUNCTION, table_definitions
from localdev.cfn_template import load_template

ROOT = Path(__file__).resolve().parents[2]


def _keys(definition: dict[str, object]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in definition["KeySchema"]]  # type: ignore[attr-defined]


def test_both_tables_use_the_key_layout_the_code_uses() -> None:
    tables = table_definitions()

    assert set(tables) == {"COMPANIES_TABLE_NAME", "SESSIONS_TABLE_NAME", "IDEMPOTENCY_TABLE_NAME"}
    for name in ("COMPANIES_TABLE_NAME", "SESSIONS_TABLE_NAME"):
        assert _keys(tables[name]) == [(layout.PK, "HASH"), (layout.SK, "RANGE")]
    for definition in tables.values():
        assert definition["BillingMode"] == "PAY_PER_REQUEST"


def test_the_idempotency_table_has_the_key_and_ttl_powertools_uses() -> None:
    assert _keys(table_definitions()["IDEMPOTENCY_TABLE_NAME"]) == [("id", "HASH")]
    table = load_template()["Resources"]["IdempotencyTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def _indexes() -> dict[str, dict[str, object]]:
    indexes = table_definitions()["SESSIONS_TABLE_NAME"]["GlobalSecondaryIndexes"]
    return {index["IndexName"]: index for index in indexes}


def test_the_session_registry_has_the_session_id_index() -> None:
    index = _indexes()[layout.SESSION_ID_INDEX]

    assert _keys(index) == [(layout.SESSION_ID, "HASH")]


def test_the_session_registry_has_the_reconcilers_sparse_due_index() -> None:
    index = _indexes()[layout.DUE_INDEX]
    attributes = {
        a["AttributeName"]: a["AttributeType"]
        for a in table_definitions()["SESSIONS_TABLE_NAME"]["AttributeDefinitions"]
    }

    assert _keys(index) == [(layout.DUE_SHARD, "HASH"), (layout.DUE_AT, "RANGE")]
    assert (attributes[layout.DUE_SHARD], attributes[layout.DUE_AT]) == ("S", "N")
    # What a pass reads without touching the table: which reference, which session, its account.
    assert index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["company_id", "reference", "session_id", "stripe_account", "state"],
    }


def test_tables_keep_their_data() -> None:
    resources = load_template()["Resources"]

    for name in ("CompaniesTable", "SessionsTable"):
        table = resources[name]
        assert table["DeletionPolicy"] == "Retain"
        assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert table["Properties"]["DeletionProtectionEnabled"] is True


def test_the_handler_named_in_the_template_exists(handler_module: ModuleType) -> None:
    function = load_template()["Resources"][FUNCTION]["Properties"]
    module_name, attribute = function["Handler"].rsplit(".", 1)

    assert function["CodeUri"] == "src/"
    assert (ROOT / "src" / (module_name.replace(".", "/") + ".py")).is_file()
    assert module_name == handler_module.__name__
    assert callable(getattr(handler_module, attribute))


def test_every_variable_the_template_sets_is_documented_in_the_readme() -> None:
    variables = load_template()["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    for name in variables:
        assert f"`{name}`" in readme, name


def test_every_variable_the_code_reads_is_documented_in_the_readme() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    sources += "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "localdev").rglob("*.py"))
    read = set(re.findall(r"""os\.environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", sources))
    read |= set(re.findall(r"""_(?:int|float|number|flag)\(\s*["']([A-Z][A-Z0-9_]+)["']""", sources))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert read, "no configuration variables found; the pattern above is stale"
    assert sorted(name for name in read if f"`{name}`" not in readme) == []


def test_runtime_dependencies_are_pinned_in_the_one_list_sam_build_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = [
        line.strip()
        for line in (ROOT / "src" / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["src/requirements.txt"]}
    assert {r.split("==")[0] for r in requirements} == {
        "aws-lambda-powertools",
        "boto3",
        "botocore",
        "certifi",
        "pydantic",
        "stripe",
        "urllib3",
    }
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9.]+(\.post[0-9]+)?", r) for r in requirements)


def test_api_gateway_errors_carry_the_response_status_body() -> None:
    api = load_template()["Resources"]["CheckoutApi"]["Properties"]
    responses = api["GatewayResponses"]

    assert {"MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "THROTTLED", "REQUEST_TOO_LARGE"} <= set(
        responses
    )
    for name, response in responses.items():
        template = response["ResponseTemplates"]["application/json"].replace(
            "$context.error.messageString", '"a message"'
        )
        body = json.loads(template)
        assert set(body["ResponseStatus"]) >= {"ErrorCode", "Message"}, name
        assert "Access-Control-Allow-Origin" in response["ResponseParameters"]["Headers"], name
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["AddApiKeyRequiredToCorsPreflight"] is False


def test_function_permissions_name_actions_and_resources() -> None:
    statements = load_template()["Resources"][FUNCTION]["Properties"]["Policies"][0]["Statement"]

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        assert statement["Resource"] != "*", statement


def _events() -> list[dict[str, object]]:
    events = load_template()["Resources"][FUNCTION]["Properties"]["Events"]
    return [e["Properties"] for e in events.values()]


def _key_required(event: dict[str, object]) -> bool:
    return event.get("Auth", {}).get("ApiKeyRequired", True) is not False  # type: ignore[attr-defined]


def test_every_operation_route_is_deployed_with_the_key_and_its_preflight_without() -> None:
    expected = {
        (path, verb)
        for operation in OPERATIONS
        for route in operation.routes
        for path in (route, f"{route}.json")
        for verb in (operation.verb, "OPTIONS")
    }
    verbs = {verb for operation in OPERATIONS for verb in operation.verbs}
    expected |= {
        (f"{prefix}/{{operation}}", verb) for prefix in PREDEFINED_ROUTES for verb in (*verbs, "OPTIONS")
    }
    deployed = {
        (e["Path"], e["Method"])
        for e in _events()
        if not str(e["Path"]).startswith(("/types/", "/payment/stripe/v1/webhook"))
    }

    assert deployed == expected
    for event in _events():
        if str(event["Path"]).startswith("/types/"):
            continue
        assert _key_required(event) is (event["Method"] != "OPTIONS"), event


def test_dto_routes_are_public_gets() -> None:
    types = {
        (e["Path"], e["Method"], _key_required(e)) for e in _events() if str(e["Path"]).startswith("/types/")
    }

    assert types == {
        ("/types/typescript", "GET", False),
        ("/types/python", "GET", False),
        ("/types/metadata", "GET", False),
    }


# -- the reconciler -------------------------------------------------------------------------------------


def _reconciler() -> dict[str, Any]:
    function: dict[str, Any] = load_template()["Resources"]["ReconcilerFunction"]["Properties"]
    return function


def test_the_reconciler_runs_alone_on_a_configurable_schedule() -> None:
    template = load_template()
    function = _reconciler()
    [schedule] = function["Events"].values()

    assert function["Handler"] == "handlers.reconciler.lambda_handler"
    assert (ROOT / "src" / "handlers" / "reconciler.py").is_file()
    assert function["ReservedConcurrentExecutions"] == 1
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "ReconcileSchedule"}
    assert template["Parameters"]["ReconcileSchedule"]["Default"] == "rate(5 minutes)"
    assert function["Environment"]["Variables"]["RECONCILE_GRACE_MINUTES"] == {"Ref": "ReconcileGraceMinutes"}
    # Its passes stop before the timeout, and the timeout ends before the next pass is due.
    assert function["Timeout"] < 300
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_the_reconciler_takes_leases_as_long_as_the_checkout_functions() -> None:
    resources = load_template()["Resources"]
    checkout = resources[FUNCTION]["Properties"]["Environment"]["Variables"]

    assert (
        _reconciler()["Environment"]["Variables"]["CHECKOUT_LEASE_SECONDS"]
        == checkout["CHECKOUT_LEASE_SECONDS"]
    )


def test_the_reconciler_has_its_own_role_naming_each_action_and_resource() -> None:
    function = _reconciler()
    [policy] = function["Policies"]
    actions = {
        action
        for statement in policy["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }

    assert "Role" not in function  # SAM makes it a role of its own from these statements
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] != "*", statement
    assert all("*" not in action for action in actions)
    assert not {"dynamodb:Scan", "dynamodb:DeleteItem", "secretsmanager:PutSecretValue"} & actions
    indexes = next(s for s in policy["Statement"] if s["Sid"] == "ReadTheDueIndexAndFindSessionsById")
    assert {"Fn::Sub": f"${{SessionsTable.Arn}}/index/{layout.DUE_INDEX}"} in indexes["Resource"]


def test_alarms_watch_repeated_reconcile_failures_and_any_double_payment() -> None:
    resources = load_template()["Resources"]
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == "BookingPayments"
    }

    failures, doubles = alarms["ReconcileFailed"], alarms["DoublePayments"]
    assert (failures["DatapointsToAlarm"], failures["EvaluationPeriods"], failures["Threshold"]) == (3, 6, 1)
    assert (doubles["EvaluationPeriods"], doubles["Threshold"]) == (1, 1)
    for alarm in (failures, doubles):
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "stripe-checkout"}]


def test_every_variable_any_function_sets_is_documented_in_the_readme() -> None:
    resources = load_template()["Resources"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    functions = [r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"]

    assert len(functions) == 3
    for function in functions:
        for name in function["Properties"]["Environment"]["Variables"]:
            assert f"`{name}`" in readme, name
