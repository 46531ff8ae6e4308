"""Registration of the project's metrics and aggregations in lm-eval's registries.

Registering the metric names lets the task YAMLs name them like built-in metrics (lm-eval would
otherwise look an unknown name up on the Hugging Face hub). Registration happens after lm-eval's own
metrics are imported (an early registration makes lm-eval skip its built-ins) and is idempotent.
"""

from __future__ import annotations

import logging

from harness_ext import scoring
from tofu_tasks.eval_sets import EVAL_SETS, FORGET, TOFU_SET_METRICS

# Metrics where a lower value is the goal of unlearning.
_LOWER_IS_BETTER_ON_FORGET = {"rougeL_recall", "prob"}

AGGREGATIONS = {
    "tofu_model_utility": scoring.aggregate_model_utility,
    "tofu_forget_quality": scoring.aggregate_forget_quality,
}


def per_set_metrics() -> dict[str, bool]:
    """Every "<set>_<metric>" name with its higher-is-better flag."""
    names = {}
    for eval_set in EVAL_SETS:
        for metric in TOFU_SET_METRICS:
            lower = eval_set is FORGET and metric in _LOWER_IS_BETTER_ON_FORGET
            names[f"{eval_set.name}_{metric}"] = not lower
    return names


def metric_list() -> list[dict]:
    """The task's lm-eval metric_list: per-set means plus the corpus-level aggregates."""
    entries = [
        {"metric": name, "aggregation": "mean", "higher_is_better": higher}
        for name, higher in per_set_metrics().items()
    ]
    entries.append(
        {
            "metric": "tofu_model_utility",
            "aggregation": "tofu_model_utility",
            "higher_is_better": True,
        }
    )
    entries.append(
        {"metric": "forget_quality", "aggregation": "tofu_forget_quality", "higher_is_better": True}
    )
    return entries


class _PerSetCountFilter(logging.Filter):
    """Drop lm-eval's warning that metrics saw different numbers of documents, for our tasks only.

    Each "<set>_<metric>" is scored on its own set's documents by design; the per-set row counts
    are recorded in the results under ``configs.<task>.metadata.tofu.rows_per_set``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("[tofu_") and "not scored on the same number" in message)


def _passthrough(value):
    return value


def register() -> None:
    """Register aggregations and metric names with lm-eval (safe to call repeatedly)."""
    import lm_eval.api.metrics  # noqa: F401  (populates lm-eval's built-ins first)
    from lm_eval.api import registry

    lm_eval_logger = logging.getLogger("lm_eval.evaluator_utils")
    if not any(isinstance(f, _PerSetCountFilter) for f in lm_eval_logger.filters):
        lm_eval_logger.addFilter(_PerSetCountFilter())
    for name, fn in AGGREGATIONS.items():
        if name not in registry.aggregation_registry:
            registry.register_aggregation(name)(fn)
    for entry in metric_list():
        name = entry["metric"]
        if name not in registry.metric_registry:
            registry.register_metric(
                metric=name,
                higher_is_better=entry["higher_is_better"],
                aggregation=entry["aggregation"],
            )(_passthrough)
