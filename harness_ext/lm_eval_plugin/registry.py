"""Registration of the tasks' metrics and aggregations in lm-eval's registries: the machinery
every benchmark shares (per-set means, forget efficacy and quality, membership inference), and
the call a benchmark's task makes with its own additions.

Registering the metric names lets the task YAMLs name them like built-in metrics (lm-eval would
otherwise look an unknown name up on the Hugging Face hub). Registration happens after lm-eval's own
metrics are imported (an early registration makes lm-eval skip its built-ins) and is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from harness_ext.lm_eval_plugin import PROJECT_TASK_PREFIXES
from harness_ext.metrics import aggregate as scoring
from harness_ext.metrics import privacy
from harness_ext.metrics.eval_set import CLOSER_LOOK_SET_METRICS, EvalSet
from harness_ext.metrics.ideals import ideal_of

# Aggregations every benchmark's tasks share; a benchmark adds its own (its model utility).
SHARED_AGGREGATIONS = {
    "tofu_mean_or_na": scoring.aggregate_mean_or_na,
    "tofu_forget_efficacy": scoring.aggregate_forget_efficacy,
    "tofu_forget_quality": scoring.aggregate_forget_quality,
    "tofu_mia_auc": privacy.mia_auc_from_items,
    "tofu_privleak": privacy.privleak_from_items,
}
# (metric, aggregation) of the corpus-level privacy aggregates: membership inference of forget
# rows against holdout rows (best: the retain model's AUC), and privleak
PRIVACY_METRICS = (
    *((privacy.mia_key(attack), "tofu_mia_auc") for attack in privacy.MIA_ATTACKS),
    ("privleak", "tofu_privleak"),
)
# memorisation of the forget answers (teacher-forced argmax), per forget row
MEMORIZATION_METRICS = ("forget_extraction_strength", "forget_exact_memorization")


def per_set_metrics(sets: Sequence[EvalSet], memorization: bool = False) -> dict[str, str]:
    """Every "<set>_<metric>" name of these sets with its aggregation, and the memorisation of
    the forget answers when the task scores it."""
    # every per-set metric may be "N/A (reason)": no model to compute it, or no rows
    names = {
        f"{eval_set.name}_{metric}": "tofu_mean_or_na"
        for eval_set in sets
        for metric in (*CLOSER_LOOK_SET_METRICS, "bertscore_f1")
    }
    names["forget_truth_ratio_closer_look"] = "tofu_mean_or_na"
    if memorization:
        names.update(dict.fromkeys(MEMORIZATION_METRICS, "tofu_mean_or_na"))
    return names


def metric_entries(pairs: Iterable[tuple[str, str]]) -> list[dict]:
    """lm-eval metric_list entries of (metric, aggregation) pairs, each with lm-eval's
    higher_is_better (None where the best value is the retain model's)."""
    return [
        {"metric": name, "aggregation": aggregation,
         "higher_is_better": ideal_of(name).higher_is_better}
        for name, aggregation in pairs
    ]  # fmt: skip


class _PerSetCountFilter(logging.Filter):
    """Drop lm-eval's warning that metrics saw different numbers of documents, for our tasks only.

    Each "<set>_<metric>" is scored on its own set's documents by design; the per-set row counts
    are recorded in the results under ``configs.<task>.metadata.tofu.rows_per_set``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = message.startswith(tuple(f"[{prefix}" for prefix in PROJECT_TASK_PREFIXES))
        return not (ours and "not scored on the same number" in message)


def _passthrough(value):
    return value


def register(aggregations: Mapping[str, Callable], metric_list: Iterable[dict]) -> None:
    """Register a benchmark's aggregations (and the shared ones) and metric names with lm-eval
    (safe to call repeatedly)."""
    import lm_eval.api.metrics  # noqa: F401  (populates lm-eval's built-ins first)
    from lm_eval.api import registry

    from harness_ext.lm_eval_plugin import current_model

    current_model.install()  # the tasks ask the model being evaluated what it returns
    lm_eval_logger = logging.getLogger("lm_eval.evaluator_utils")
    if not any(isinstance(f, _PerSetCountFilter) for f in lm_eval_logger.filters):
        lm_eval_logger.addFilter(_PerSetCountFilter())
    for name, fn in {**SHARED_AGGREGATIONS, **aggregations}.items():
        if name not in registry.aggregation_registry:
            registry.register_aggregation(name)(fn)
    for entry in metric_list:
        name = entry["metric"]
        if name not in registry.metric_registry:
            registry.register_metric(
                metric=name,
                higher_is_better=entry["higher_is_better"],
                aggregation=entry["aggregation"],
            )(_passthrough)
