"""The metrics the MUSE tasks report, with their lm-eval aggregations: MUSE's criteria (ROUGE-L F1
of knowledge and verbatim memorisation; privleak) and every shared metric that applies
(membership-inference AUCs of the forget texts against the holdout texts, extraction strength
and exact memorisation of the verbatim continuations)."""

from __future__ import annotations

from harness_ext.lm_eval_plugin import registry
from tofu_tasks.muse.options import KNOWMEM_SETS, VERBMEM_SET

ROUGE_METRIC = "rougeL_f1"
# per set: the per-row metrics its documents report
SET_METRICS = {
    **{name: (f"{name}_{ROUGE_METRIC}",) for name in KNOWMEM_SETS},
    VERBMEM_SET: (f"{VERBMEM_SET}_{ROUGE_METRIC}", *registry.MEMORIZATION_METRICS),
}
PER_ROW = tuple(name for names in SET_METRICS.values() for name in names)


def metric_list() -> list[dict]:
    """The MUSE tasks' lm-eval metric_list."""
    pairs = [*((name, "tofu_mean_or_na") for name in PER_ROW), *registry.PRIVACY_METRICS]
    return registry.metric_entries(pairs)


def register() -> None:
    """The MUSE metric names in lm-eval's registries (idempotent)."""
    registry.register({}, metric_list())
