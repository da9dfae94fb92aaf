"""Write template.yaml as JSON with every optional part switched on, for checkov.

checkov evaluates a template's conditions with the parameters' defaults and skips the
resources whose condition is false, so the optional parts (WAF, custom domain, the API
Gateway account role, the alarm e-mail) would go unscanned. Usage:
    template_all_features.py template.yaml out.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

ALL_FEATURES = {
    "AllowedOrigins": "https://booking.example.com",
    "AlarmEmail": "alarms@example.com",
    "EnableWaf": "true",
    "DomainName": "pay.example.com",
    "CertificateArn": "arn:aws:acm:eu-north-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    "ManageApiGatewayAccount": "true",
    "ApiKeyDailyQuota": 10000,
}


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (`!Ref X`) as their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def main(source: str, target: str) -> None:
    with open(source, encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    for name, value in ALL_FEATURES.items():
        template["Parameters"][name]["Default"] = value
    with open(target, "w", encoding="utf-8") as stream:
        json.dump(template, stream, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
