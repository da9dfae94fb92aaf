"""`/types/*`: ServiceStack's "Add ServiceStack Reference" for every operation, through the handler."""

from __future__ import annotations

import json
import sys
import types

import pytest

from checkout.operations import OPERATIONS
from checkout.servicestack import properties, snake_case
from localdev.apigw import rest_event
from tests.conftest import Api, Reply

DEPLOYED = {"Host": "abc123.execute-api.eu-north-1.amazonaws.com", "X-Forwarded-Proto": "https"}


def fetch(api: Api, path: str) -> Reply:
    return api.invoke(rest_event("GET", path, headers=DEPLOYED))


@pytest.mark.parametrize("path", ["/types/typescript", "/types/python", "/TYPES/TypeScript"])
def test_dtos_name_the_base_url_the_caller_used_stage_included(api: Api, path: str) -> None:
    reply = fetch(api, path)

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "\nBaseUrl: https://abc123.execute-api.eu-north-1.amazonaws.com/local\n" in reply.text


def test_typescript_dtos_type_every_operation_for_the_npm_client(api: Api) -> None:
    text = fetch(api, "/types/typescript").text

    assert text.startswith("/* Options:\nDate: ")
    assert "export interface IReturn<T>\n{\n    createResponse(): T;\n}" in text
    for operation in OPERATIONS:
        name, response = operation.name, operation.response.__name__
        assert f"export class {name} implements IReturn<{response}>, I{operation.verb.capitalize()}\n" in text
        assert f"public getTypeName() {{ return '{name}'; }}" in text
        assert f"public getMethod() {{ return '{operation.verb}'; }}" in text
        assert f"public createResponse() {{ return new {response}(); }}" in text
        for route in operation.routes:
            assert f'// @Route("{route}", "{operation.verb}")' in text
        assert f"export class {response}\n" in text
    assert "    public CompanyId: string;\n" in text
    assert "    public Articles: ArticleToCreate[];\n" in text
    assert "    public UiMode?: string;\n" in text
    assert "    public Quantity?: number;\n" in text


def test_python_dtos_define_every_operation_for_the_pypi_client(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("generated_dtos")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(fetch(api, "/types/python").text, "dtos.py", "exec"), module.__dict__)

    from servicestack import IPost, IReturn

    for operation in OPERATIONS:
        request = getattr(module, operation.name)
        assert issubclass(request, IReturn) and issubclass(request, IPost)
        names = set(request.__dataclass_fields__)
        assert names == {snake_case(p.name) for p in properties(operation.request)}
    assert module.ArticleToCreate().quantity == 1


def test_metadata_describes_operations_routes_and_types(api: Api) -> None:
    reply = fetch(api, "/types/metadata")
    document = json.loads(reply.text)

    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert document["Config"]["BaseUrl"] == "https://abc123.execute-api.eu-north-1.amazonaws.com/local"
    assert [op["Request"]["Name"] for op in document["Operations"]] == [op.name for op in OPERATIONS]
    create = document["Operations"][0]
    assert create["Routes"] == [{"Path": "/payment/stripe/v1/checkout", "Verbs": "POST"}]
    assert create["Request"]["Implements"][0] == {
        "Name": "IReturn`1",
        "Namespace": "ServiceStack",
        "GenericArgs": ["StripeCheckoutQueryResponse"],
    }
    props = {p["Name"]: p for p in create["Request"]["Properties"]}
    assert props["CompanyId"]["Type"] == "Nullable`1" and props["CompanyId"]["GenericArgs"] == ["Guid"]
    assert props["Articles"]["GenericArgs"] == ["ArticleToCreate"]
    assert {name for name, p in props.items() if p.get("IsRequired")} == {
        "CompanyId",
        "CountryCode",
        "Articles",
        "InternalReferenceId",
    }
    assert [t["Name"] for t in document["Types"]] == ["ArticleToCreate"]
