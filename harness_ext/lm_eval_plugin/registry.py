"""Registration of the project's metrics and aggregations in lm-eval's registries.

Registering the metric names lets the task YAMLs name them like built-in metrics (lm-eval would
otherwise look an unknown name up on the Hugging Face hub). Registration happens after lm-eval's own
metrics are imported (an early registration makes lm-eval skip its built-ins) and is idempotent.
"""

from __future__ import annotations

import logging

from harness_ext.metrics import aggregate as scoring
from harness_ext.metrics import privacy
from harness_ext.metrics.ideals import ideal_of
from tofu_tasks.eval_sets import CLOSER_LOOK_SET_METRICS, EVAL_SETS, FORGET, REALWORLD_SETS

AGGREGATIONS = {
    "tofu_mean_or_na": scoring.aggregate_mean_or_na,
    "tofu_model_utility": scoring.aggregate_model_utility,
    "tofu_model_utility_18": scoring.aggregate_model_utility_18,
    "tofu_forget_efficacy": scoring.aggregate_forget_efficacy,
    "tofu_forget_quality": scoring.aggregate_forget_quality,
    "realworld_model_utility": scoring.aggregate_realworld_model_utility,
    "tofu_mia_auc": privacy.mia_auc_from_items,
    "tofu_privleak": privacy.privleak_from_items,
}
# (metric, aggregation) of the corpus-level aggregates; their ideals: harness_ext.metrics.ideals
CORPUS_METRICS = (
    ("tofu_model_utility", "tofu_model_utility"),
    ("model_utility", "tofu_model_utility_18"),
    ("forget_efficacy", "tofu_forget_efficacy"),
    ("forget_quality", "tofu_forget_quality"),
    # membership inference: forget rows against holdout rows (best: the retain model's AUC)
    *((privacy.mia_key(attack), "tofu_mia_auc") for attack in privacy.MIA_ATTACKS),
    ("privleak", "tofu_privleak"),
)
# memorisation of the forget answers (teacher-forced argmax), per forget row
MEMORIZATION_METRICS = ("forget_extraction_strength", "forget_exact_memorization")


# The real-world task reports the closer-look model utility of its neighbour set and FE.
REALWORLD_CORPUS_METRICS = (
    ("model_utility", "realworld_model_utility"),
    ("forget_efficacy", "tofu_forget_efficacy"),
)


def per_set_metrics(sets=EVAL_SETS) -> dict[str, str]:
    """Every "<set>_<metric>" name with its aggregation."""
    # every per-set metric may be "N/A (reason)": no model to compute it, or no rows
    names = {
        f"{eval_set.name}_{metric}": "tofu_mean_or_na"
        for eval_set in sets
        for metric in (*CLOSER_LOOK_SET_METRICS, "bertscore_f1")
    }
    names["forget_truth_ratio_closer_look"] = "tofu_mean_or_na"
    if FORGET in sets:
        names.update(dict.fromkeys(MEMORIZATION_METRICS, "tofu_mean_or_na"))
    return names


def metric_list(scenario: str = "tofu") -> list[dict]:
    """A task's lm-eval metric_list: per-set means plus the corpus-level aggregates, each with
    lm-eval's higher_is_better (None where the best value is the retain model's)."""
    realworld = scenario == "realworld"
    per_set = per_set_metrics(REALWORLD_SETS if realworld else EVAL_SETS)
    corpus = REALWORLD_CORPUS_METRICS if realworld else CORPUS_METRICS
    pairs = [*per_set.items(), *corpus]
    return [
        {"metric": name, "aggregation": aggregation,
         "higher_is_better": ideal_of(name).higher_is_better}
        for name, aggregation in pairs
    ]  # fmt: skip


def known_metrics(scenario: str = "tofu") -> list[str]:
    """The names of every metric a task of the scenario reports, in the task's order."""
    return [entry["metric"] for entry in metric_list(scenario)]


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

    from harness_ext.lm_eval_plugin import current_model

    current_model.install()  # the tasks ask the model being evaluated what it returns
    lm_eval_logger = logging.getLogger("lm_eval.evaluator_utils")
    if not any(isinstance(f, _PerSetCountFilter) for f in lm_eval_logger.filters):
        lm_eval_logger.addFilter(_PerSetCountFilter())
    for name, fn in AGGREGATIONS.items():
        if name not in registry.aggregation_registry:
            registry.register_aggregation(name)(fn)
    for entry in metric_list() + metric_list("realworld"):
        name = entry["metric"]
        if name not in registry.metric_registry:
            registry.register_metric(
                metric=name,
                higher_is_better=entry["higher_is_better"],
                aggregation=entry["aggregation"],
            )(_passthrough)
