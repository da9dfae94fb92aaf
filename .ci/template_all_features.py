"""Write template.yaml as JSON with every optional part switched on, for checkov.

checkov evaluates a template's conditions with the parameters' defaults and skips the
resources whose condition is false, so the optional parts (WAF, custom domain, the API
Gateway account role, the alarm e-mail) would go unscanned. Usage:
    template_all_features.py template.yaml out.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Run by path from the repository root (./dev sam), in checkov's virtualenv.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localdev.cfn_template import load_template

ALL_FEATURES = {
    "AllowedOrigins": "https://booking.example.com",
    "AlarmEmail": "alarms@example.com",
    "EnableWaf": "true",
    "DomainName": "pay.example.com",
    "CertificateArn": "arn:aws:acm:eu-north-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    "ManageApiGatewayAccount": "true",
    "ApiKeyDailyQuota": 10000,
}


def main(source: str, target: str) -> None:
    template = load_template(Path(source))
    for name, value in ALL_FEATURES.items():
        template["Parameters"][name]["Default"] = value
    with open(target, "w", encoding="utf-8") as stream:
        json.dump(template, stream, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
