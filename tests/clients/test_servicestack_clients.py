"""ServiceStack's own clients against the local API, with DTOs this service generates.

The npm `@servicestack/client` (pinned in tests/clients/node, installed by `./dev`
with `npm ci`) runs with DTOs from `/types/typescript`; the PyPI `servicestack` client
(pinned in pyproject's dev extras) with DTOs from `/types/python`. Each makes the calls a
frontend makes: a checkout, a validation error read by the client's own error handling,
and a 409 for a reference that is already paid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from localdev.local_api import DEMO_COMPANY_ID
from tests.conftest import LocalApiProcess
from tests.integration.test_local_api import local_api  # noqa: F401  (the `./dev run` process)

NODE_PROJECT = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def base_url(local_api: LocalApiProcess) -> str:  # noqa: F811
    return local_api.url("Checkout API on")


@pytest.fixture(scope="module")
def api_key(local_api: LocalApiProcess) -> str:  # noqa: F811
    """The key `./dev run` bound to the demo company, as its banner prints it."""
    found = re.search(r"Demo API key:\s+(\S+)", local_api.banner)
    assert found, local_api.banner
    return found.group(1)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        text: str = response.read().decode("utf-8")
        return text


# -- npm @servicestack/client ----------------------------------------------------------------


@pytest.fixture(scope="module")
def node_results(base_url: str, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the npm client tests"
    modules = NODE_PROJECT / "node_modules"
    assert (modules / "@servicestack" / "client").is_dir(), "run ./dev (it runs npm ci in tests/clients/node)"
    work = tmp_path_factory.mktemp("node-client")
    for name in ("client.ts", "tsconfig.json"):
        shutil.copy(NODE_PROJECT / name, work / name)
    (work / "node_modules").symlink_to(modules, target_is_directory=True)
    (work / "dtos.ts").write_text(_get(f"{base_url}/types/typescript"), encoding="utf-8")

    compiled = subprocess.run(
        [node, str(modules / "typescript" / "bin" / "tsc"), "-p", str(work / "tsconfig.json")],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    env = {
        **os.environ,
        "BASE_URL": base_url,
        "API_KEY": api_key,
        "COMPANY_ID": DEMO_COMPANY_ID,
        "RUN_ID": uuid.uuid4().hex[:8],
    }
    ran = subprocess.run(
        [node, str(work / "build" / "client.js")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    results: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
    return results


def test_npm_client_post_and_api_reach_the_predefined_api_route(node_results: dict[str, Any]) -> None:
    for call in ("post",):
        assert node_results[call]["Status"] == "open"
        assert node_results[call]["SessionId"].startswith("cs_test_")
    assert node_results["api"]["succeeded"] is True
    assert node_results["api"]["response"]["Status"] == "open"
    assert any(url.endswith("/api/StripeV1CreateCheckout") for url in node_results["urls"])


def test_npm_client_post_to_url_and_json_reply_route(node_results: dict[str, Any]) -> None:
    assert node_results["postToUrl"]["Status"] == "open"
    assert node_results["jsonReply"]["Status"] == "open"
    assert any(url.endswith("/payment/stripe/v1/checkout") for url in node_results["urls"])


def test_npm_client_reads_validation_errors_with_its_own_error_handling(node_results: dict[str, Any]) -> None:
    posted = node_results["postInvalid"]
    assert posted["failed"] is True
    assert posted["errorCode"] == "NotEmpty"
    assert posted["message"] == "'Company Id' must not be empty."
    assert [e["fieldName"] for e in posted["errors"]] == ["CompanyId", "Articles"]

    api = node_results["apiInvalid"]
    assert api["failed"] is True and api["errorCode"] == "NotEmpty"
    assert api["companyIdMessage"] == "'Company Id' must not be empty."
    assert api["articlesMessage"] == "'Articles' must not be empty."
    assert api["fieldNames"] == ["CompanyId", "Articles"]


def test_npm_client_reads_the_409_of_a_paid_reference(node_results: dict[str, Any]) -> None:
    assert node_results["postConflict"]["failed"] is True
    assert node_results["postConflict"]["errorCode"] == "AlreadyPaid"
    assert node_results["apiConflict"] == {
        "failed": True,
        "errorCode": "AlreadyPaid",
        "errorMessage": "This reference already has a completed checkout; it cannot be paid again.",
    }


def test_npm_client_get_of_an_operation_with_a_list_is_a_binding_error(node_results: dict[str, Any]) -> None:
    got = node_results["get"]
    assert got["failed"] is True
    assert got["errorCode"] == "SerializationException"
    assert [e["fieldName"] for e in got["errors"]] == ["Articles"]


# -- PyPI servicestack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dtos(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("python-client") / "checkout_dtos.py"
    path.write_text(_get(f"{base_url}/types/python"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("checkout_dtos", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["checkout_dtos"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(base_url: str, api_key: str) -> Any:
    from servicestack import JsonServiceClient
    from servicestack.clients import append_querystring

    client = JsonServiceClient(base_url)
    client.headers["x-api-key"] = api_key

    # The Python client reads camelCase (or snake_case) names only, so it asks for them,
    # as it has to against the original host too.
    def camel_case(info: Any) -> None:
        info.url = append_querystring(info.url, {"jsconfig": "EmitCamelCaseNames:true"})

    client.request_filter = camel_case
    return client


def _checkout(dtos: ModuleType, reference: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "company_id": DEMO_COMPANY_ID,
        "country_code": "SE",
        "articles": [dtos.ArticleToCreate(article_id=42, article_type_id=1)],
        "internal_reference_id": f"py-{uuid.uuid4().hex[:8]}-{reference}",
        **overrides,
    }
    return dtos.StripeV1CreateCheckout(**values)


def test_python_client_post_send_and_post_url(client: Any, dtos: ModuleType) -> None:
    posted = client.post(_checkout(dtos, "post"))
    sent = client.send(_checkout(dtos, "send"))
    to_url = client.post_url("/payment/stripe/v1/checkout", _checkout(dtos, "url"))

    for response in (posted, sent, to_url):
        assert isinstance(response, dtos.StripeCheckoutQueryResponse)
        assert response.status == "open"
        assert response.session_id.startswith("cs_test_")
        assert response.url


def test_python_client_reads_validation_errors(client: Any, dtos: ModuleType) -> None:
    from servicestack import WebServiceException

    with pytest.raises(WebServiceException) as caught:
        client.post(_checkout(dtos, "invalid", company_id=None, country_code="XX"))

    status = caught.value.response_status
    assert caught.value.status_code == 400
    assert status.error_code == "NotEmpty"
    assert status.message == "'Company Id' must not be empty."
    assert [(e.field_name, e.error_code) for e in status.errors] == [
        ("CompanyId", "NotEmpty"),
        ("CountryCode", "Predicate"),
    ]
    assert status.errors[1].meta == {"PropertyName": "Country Code", "PropertyValue": "XX"}


def test_python_client_reads_the_409_of_a_paid_reference(client: Any, dtos: ModuleType) -> None:
    from servicestack import WebServiceException

    request = _checkout(dtos, "paid")
    session = client.post(request)
    urllib.request.urlopen(urllib.request.Request(session.url, data=b"", method="POST"), timeout=30)

    with pytest.raises(WebServiceException) as caught:
        client.post(request)

    assert caught.value.status_code == 409
    assert caught.value.response_status.error_code == "AlreadyPaid"
