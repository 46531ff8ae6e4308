"""The aggregates of the TOFU and real-world tasks that depend on their sets: model utility over
TOFU's Retain, Real Authors and World Facts sets (or the real-world neighbour set), every metric
of a run over TOFU's four sets, and the real-world utility with lm-eval's general-ability tasks.
The math is the shared one of :mod:`harness_ext.metrics.aggregate`; this module names the sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness_ext.metrics import tofu as M
from harness_ext.metrics.aggregate import (
    SampleScore,
    is_number,
    model_utility,
    not_computed,
    set_values,
    summarize,
)
from harness_ext.metrics.eval_set import CLOSER_LOOK_SET_METRICS, TOFU_SET_METRICS
from tofu_tasks.eval_sets import EVAL_SETS, REALWORLD_UTILITY_SETS, UTILITY_SETS


def tofu_model_utility(
    values: Mapping[str, Mapping[str, Any]], metric_names: Sequence[str] = TOFU_SET_METRICS
) -> float | str:
    """Model utility over TOFU's utility sets: MU-9 with TOFU's metrics, MU-18 with the six."""
    return model_utility(values, metric_names, UTILITY_SETS)


def summarize_tofu(
    samples: Iterable[SampleScore],
    reference: Sequence[tuple[int | None, str, float]] | None = None,
) -> dict[str, Any]:
    """Every metric of a run over TOFU's four sets (see :func:`summarize`)."""
    return summarize(samples, EVAL_SETS, UTILITY_SETS, reference)


# lm-eval aggregations of the tasks' model utility: each receives the per-document items of one
# metric; a ``None`` item is a placeholder of a document of another set (skipped).
def aggregate_model_utility(items: Sequence[Mapping[str, Any]]) -> float | str:
    """MU-9 from per-document {"set", "rougeL_recall", "prob", "truth_ratio", ...} items."""
    return tofu_model_utility(set_values(i for i in items if i is not None))


def aggregate_model_utility_18(items: Sequence[Mapping[str, Any]]) -> float | str:
    """MU-18 (the closer-look paper's model utility) from per-document items."""
    values = set_values(i for i in items if i is not None)
    return tofu_model_utility(values, CLOSER_LOOK_SET_METRICS)


def aggregate_realworld_model_utility(items: Sequence[Mapping[str, Any]]) -> float | str:
    """Real-world model utility: harmonic mean of the neighbour set's six numbers."""
    values = set_values(i for i in items if i is not None)
    return model_utility(values, CLOSER_LOOK_SET_METRICS, REALWORLD_UTILITY_SETS)


# The real-world scenario's general-ability tasks (lm-eval's own) and the score the paper reads.
GENERAL_ABILITY = {
    "arc_challenge": "acc_norm,none",
    "mmlu": "acc,none",
    "truthfulqa_mc1": "acc,none",
    "triviaqa": "exact_match,remove_whitespace",
    "gsm8k": "exact_match,flexible-extract",
}


def general_ability(results: Mapping[str, Any]) -> dict[str, float]:
    """The general-ability scores present in an lm-eval ``results`` mapping (task -> value)."""
    found = {}
    for task, key in GENERAL_ABILITY.items():
        value = results.get(task, {}).get(key)
        if is_number(value):
            found[task] = float(value)
    return found


def realworld_utility_with_general(
    neighbor: Mapping[str, Any], general: Mapping[str, float]
) -> float | str:
    """Real-world model utility with general ability: the harmonic mean of the neighbour set's
    six numbers and the five general-ability scores; names what is missing."""
    components = {f"neighbor_{m}": neighbor.get(m) for m in CLOSER_LOOK_SET_METRICS}
    components.update({task: general.get(task) for task in GENERAL_ABILITY})
    missing = [name for name, value in components.items() if not is_number(value)]
    if missing:
        return not_computed("missing " + ", ".join(missing))
    return M.harmonic_mean([float(v) for v in components.values()])
