"""Logging and metrics, set up once for the function and the CLI.

Powertools Logger writes structured JSON with the API Gateway request id as correlation
id; Metrics writes CloudWatch EMF to stdout. The service name and namespace come from
`POWERTOOLS_SERVICE_NAME` and `POWERTOOLS_METRICS_NAMESPACE` (defaults in `config`), the level
from `POWERTOOLS_LOG_LEVEL`. Nothing here logs request bodies or Stripe responses: they
hold client secrets.
"""

from __future__ import annotations

import logging
import warnings

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from checkout.config import Config

_config = Config.from_env()
SERVICE_NAME = _config.service_name
METRICS_NAMESPACE = _config.metrics_namespace

# A request that fails validation publishes no counters on the shared object (its
# rejection is its own record), which is normal here, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# At DEBUG, botocore logs response bodies (GetSecretValue's holds a Stripe key) and
# urllib3/stripe log request details; keep them quiet whatever the root level is.
for _noisy in ("botocore", "boto3", "urllib3", "stripe"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def count(name: str, value: int = 1) -> None:
    """Add to a counter metric of this invocation."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_rejection(reason: str) -> None:
    """Count a rejected request under its reason (its ErrorCode), as its own EMF record.

    A separate record because a dimension added to the shared `metrics` object would
    apply to every metric of the invocation.
    """
    with single_metric(
        name="RequestsRejected",
        unit=MetricUnit.Count,
        value=1,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME},
    ) as metric:
        metric.add_dimension(name="Reason", value=reason)
