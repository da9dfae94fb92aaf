"""Lambda entry point of the reconciler, invoked by an EventBridge schedule.

Thin by design: one pass (`checkout.reconciler`) with the invocation's remaining time as
its budget; the answer is the pass's report without its list of repairs (the log has
each one). The event's content does not matter: every scheduled event asks for the same
pass, and `checkout-admin reconcile` runs the same pass by hand.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from checkout.composition import build_reconciler
from checkout.config import Config
from checkout.observability import logger, metrics

RECONCILER = build_reconciler(Config.from_env())


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge scheduled event entry point."""
    report = RECONCILER.run(seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return {k: v for k, v in report.to_dict().items() if k != "repairs"}
