"""Ranking comparable runs by what is right: each metric's ideal (higher, lower, or closest to
the retain model's value) and, at matched forgetting, utility.

A run records the retain model's values on its rows (``retain_values`` in its results, when it
was scored with a retain reference); without them the retain model's own run in the same table
gives them, and privleak needs neither (its ideal is 0 by definition).

>>> from types import SimpleNamespace as Run
>>> runs = [Run(label=l, metrics={"privleak": v}, retain_values={}, role="") for l, v in
...         [("over-unlearned", 125.0), ("leaks", -5.0), ("close", 3.0)]]
>>> [r.label for r in order(runs, "privleak")]
['close', 'leaks', 'over-unlearned']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness_ext.metrics.ideals import RETAIN, Ideal, finite, ideal_of, parse_ranking

# Without matched forgetting: the first of these most runs have.
# MUSE's tables have no aggregate of their own: privleak (best 0) ranks them; WMDP's, its
# accuracy at matched utility (UTILITY_GATES); LUME's, the challenge's final score (its task
# aggregate when no MMLU accuracy was given).
# (LUME's runs have privleak too, but its own scores are what the challenge ranks by)
RANK_PREFERENCE = (
    "forget_efficacy", "forget_quality", "tofu_model_utility", "lume_final_score",
    "lume_task_aggregate", "privleak", "forget_wmdp_acc",
)  # fmt: skip
# At matched forgetting the paper compares utility at equal forgetting.
UTILITY_PREFERENCE = ("model_utility", "tofu_model_utility")
RETAIN_ROLE = "retain reference"


# A forget metric ranked at matched utility: the runs whose utility fell by at most the
# tolerance from the model before unlearning's (the change metric) rank first.
UTILITY_GATES = {"forget_wmdp_acc": "mmlu_acc_change"}
DEFAULT_UTILITY_TOLERANCE = 0.02


@dataclass(frozen=True)
class UtilityGate:
    """Forgetting compared at matched utility: ``change`` (utility minus the model's before
    unlearning) must be at least −``tolerance`` for a run to rank among the first."""

    change: str
    tolerance: float

    def keeps(self, record: Any) -> bool:
        value = finite(record.metrics.get(self.change))
        return value is not None and value >= -self.tolerance

    def first_kept(self, records: Sequence[Any]) -> list[Any]:
        """The ranked runs that keep utility, then the others (each in ranked order)."""
        return [r for r in records if self.keeps(r)] + [r for r in records if not self.keeps(r)]

    def describe(self) -> str:
        return (
            f"runs whose {self.change} is at least −{self.tolerance:g} (utility kept, against "
            f"the model before unlearning) first"
        )


def utility_gate(
    metric: str, records: Sequence[Any], tolerance: float | None = None
) -> UtilityGate | None:
    """The gate of a ranking metric, when it has one and some run reports the change."""
    change = UTILITY_GATES.get(parse_ranking(metric)[0])
    if change is None or not any(finite(r.metrics.get(change)) is not None for r in records):
        return None
    return UtilityGate(change, DEFAULT_UTILITY_TOLERANCE if tolerance is None else tolerance)


class RankingError(ValueError):
    """A ranking that cannot be applied to these runs."""


def retain_value(record: Any, metric: str, records: Sequence[Any] = ()) -> float | None:
    """The retain model's value of ``metric`` for this run: fixed by definition, recorded in the
    run's results, or the retain model's own run among ``records``."""
    ideal = ideal_of(metric)
    if ideal.fixed is not None:
        return ideal.fixed
    recorded = finite((getattr(record, "retain_values", None) or {}).get(metric))
    if recorded is not None:
        return recorded
    retain_runs = [r for r in records if RETAIN_ROLE in (getattr(r, "role", "") or "")]
    values = {finite(r.metrics.get(metric)) for r in retain_runs} - {None}
    return values.pop() if len(values) == 1 else None


def sort_key(record: Any, metric: str, ideal: Ideal, records: Sequence[Any] = ()) -> tuple:
    """(missing, distance from the ideal, label): runs without the metric rank last."""
    value = finite(record.metrics.get(metric))
    target = retain_value(record, metric, records) if ideal.kind == RETAIN else None
    if value is None or (ideal.kind == RETAIN and ideal.target(target) is None):
        return (True, 0.0, record.label)
    return (False, ideal.distance(value, target), record.label)


def order(records: Sequence[Any], ranking: str, context: Sequence[Any] = ()) -> list[Any]:
    """``records`` best first by ``ranking`` (``METRIC`` or ``closest:METRIC``); ``context``:
    every run of the table (the retain model's run among them)."""
    metric, ideal = parse_ranking(ranking)
    context = list(context) or list(records)
    return sorted(records, key=lambda r: sort_key(r, metric, ideal, context))


def check_computable(records: Sequence[Any], ranking: str, context: Sequence[Any] = ()) -> None:
    """A ranking by closeness to the retain model needs its value for some run."""
    metric, ideal = parse_ranking(ranking)
    if ideal.kind != RETAIN or ideal.fixed is not None:
        return
    context = list(context) or list(records)
    if not any(retain_value(r, metric, context) is not None for r in records):
        raise RankingError(
            f"ranking by closeness to the retain model's {metric} needs the retain model's "
            f"value: score the runs with retain_reference, or put the retain model's run in "
            f"the folders read"
        )


def matched_forgetting(selections: Sequence[dict[str, Any] | None]) -> bool:
    """Every run was stopped by one rule with a target from a reference (train
    ``--select-matching-reference``)."""
    chosen = [s for s in selections if s]
    rules = {
        (c.get("metric"), c.get("operator"), c.get("target"), c.get("reference")) for c in chosen
    }
    return (
        bool(chosen)
        and len(chosen) == len(selections)
        and len(rules) == 1
        and bool(chosen[0].get("reference"))
    )


def default_ranking(records: Sequence[Any], matched: bool) -> str | None:
    """What a table is ranked by when the user does not say: utility at matched forgetting,
    else the first preferred metric most runs have (forget quality only when every run that
    has it was scored against the same retain reference)."""
    for metric in UTILITY_PREFERENCE if matched else RANK_PREFERENCE:
        having = [r for r in records if finite(r.metrics.get(metric)) is not None]
        if not having or len(having) * 2 < len(records):
            continue
        if metric == "forget_quality" and len({r.fq_reference for r in having}) > 1:
            continue
        return metric
    return None


def describe(ranking: str | None, records: Sequence[Any] = ()) -> str:
    """ " (higher is better)", " (best: 0, the retain model's value)", ... for a sentence."""
    if not ranking:
        return ""
    metric, ideal = parse_ranking(ranking)
    values = {retain_value(r, metric, records) for r in records} - {None}
    shown = values.pop() if len(values) == 1 else None
    return f" ({ideal.describe(shown)})"
