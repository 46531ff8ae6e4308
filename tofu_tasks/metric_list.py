"""The metrics the TOFU and real-world tasks report, with their lm-eval aggregations: the shared
ones of :mod:`harness_ext.lm_eval_plugin.registry` plus each scenario's model utility."""

from __future__ import annotations

from harness_ext.lm_eval_plugin import registry
from tofu_tasks import aggregations
from tofu_tasks.eval_sets import EVAL_SETS, REALWORLD_SETS

AGGREGATIONS = {
    **registry.SHARED_AGGREGATIONS,
    "tofu_model_utility": aggregations.aggregate_model_utility,
    "tofu_model_utility_18": aggregations.aggregate_model_utility_18,
    "realworld_model_utility": aggregations.aggregate_realworld_model_utility,
}
# (metric, aggregation) of the corpus-level aggregates; their ideals: harness_ext.metrics.ideals
CORPUS_METRICS = (
    ("tofu_model_utility", "tofu_model_utility"),
    ("model_utility", "tofu_model_utility_18"),
    ("forget_efficacy", "tofu_forget_efficacy"),
    ("forget_quality", "tofu_forget_quality"),
    *registry.PRIVACY_METRICS,
)
# The real-world task reports the closer-look model utility of its neighbour set and FE.
REALWORLD_CORPUS_METRICS = (
    ("model_utility", "realworld_model_utility"),
    ("forget_efficacy", "tofu_forget_efficacy"),
)


def metric_list(scenario: str = "tofu") -> list[dict]:
    """A task's lm-eval metric_list: per-set means plus the corpus-level aggregates."""
    if scenario == "realworld":
        pairs = [*registry.per_set_metrics(REALWORLD_SETS).items(), *REALWORLD_CORPUS_METRICS]
    else:
        pairs = [*registry.per_set_metrics(EVAL_SETS, memorization=True).items(), *CORPUS_METRICS]
    return registry.metric_entries(pairs)


def known_metrics(scenario: str = "tofu") -> list[str]:
    """The names of every metric a task of the scenario reports, in the task's order."""
    return [entry["metric"] for entry in metric_list(scenario)]


def register() -> None:
    """Both scenarios' aggregations and metric names in lm-eval's registries (idempotent)."""
    registry.register(AGGREGATIONS, metric_list() + metric_list("realworld"))
