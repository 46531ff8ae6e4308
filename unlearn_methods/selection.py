"""Checkpoint selection rules of ``lm-unlearn train --select``.

A rule keeps one of the checkpoints evaluated during training (``--eval-every``):

* ``METRIC<=VALUE`` (also ``<``, ``>=``, ``>``): the first evaluated checkpoint that reaches the
  target;
* ``best:METRIC``: the best evaluated checkpoint, in the metric's direction (higher is better for
  utility, lower for forget ROUGE-L, probability, ... as the tasks declare it);
* ``--select-matching-reference REF``: a target taken from the retain model: its own value of the
  metric (default ``forget_rougeL_recall``) on the rows scored during training, read from a
  reference or results file; reached when the model is at least as far as the retain model
  (``<=`` for metrics where lower means more forgotten, ``>=`` otherwise).

>>> rule = parse_rule("forget_rougeL_recall<=0.4")
>>> rule.text, rule.reached(0.35), rule.reached(0.41)
('forget_rougeL_recall<=0.4', True, False)
>>> parse_rule("best:tofu_model_utility").improves(0.5, 0.4)
True
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness_ext.metrics.references import ReferenceRow, ScoredReference

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
DEFAULT_MATCHING_METRIC = "forget_rougeL_recall"
BEST_PREFIX = "best:"
_TARGET = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|>=|<|>)\s*(\S+)\s*$")
# Metrics a reference's rows give back: (set, metric) computed from its generation or truth ratio.
MATCHABLE = ("rougeL_recall", "truth_ratio", "truth_ratio_closer_look")


class SelectionError(ValueError):
    """A selection rule that cannot be applied."""


def known_metrics() -> dict[str, bool]:
    """Every metric the TOFU tasks report, with its direction (higher is better)."""
    from harness_ext.lm_eval_plugin.registry import metric_list

    return {entry["metric"]: bool(entry["higher_is_better"]) for entry in metric_list()}


def metric_direction(name: str) -> bool:
    """Whether higher is better for ``name``; an unknown name is refused, listing the known."""
    known = known_metrics()
    if name not in known:
        raise SelectionError(
            f"unknown metric {name!r} in --select; the tasks report: {', '.join(known)}"
        )
    return known[name]


@dataclass(frozen=True)
class SelectionRule:
    """Which evaluated checkpoint to keep (see the module docs)."""

    metric: str
    higher_is_better: bool
    operator: str | None = None  # None: keep the best value
    target: float | None = None
    reference: str | None = None  # where the target comes from (--select-matching-reference)

    @property
    def best(self) -> bool:
        return self.operator is None

    @property
    def text(self) -> str:
        if self.best:
            return f"{BEST_PREFIX}{self.metric}"
        return f"{self.metric}{self.operator}{self.target:.6g}"

    def reached(self, value: float) -> bool:
        return OPERATORS[self.operator](value, self.target)

    def improves(self, value: float, than: float) -> bool:
        return value > than if self.higher_is_better else value < than

    def describe(self) -> dict[str, Any]:
        return {
            "rule": self.text,
            "metric": self.metric,
            "operator": self.operator,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "reference": self.reference,
        }


def parse_rule(text: str) -> SelectionRule:
    """``METRIC<=VALUE`` (``<``, ``>=``, ``>``) or ``best:METRIC``."""
    if text.startswith(BEST_PREFIX):
        metric = text.removeprefix(BEST_PREFIX).strip()
        return SelectionRule(metric, metric_direction(metric))
    match = _TARGET.match(text)
    if not match:
        raise SelectionError(
            f"--select {text!r}: write METRIC<=VALUE (or <, >=, >), e.g. "
            f"'forget_rougeL_recall<=0.40', or best:METRIC, e.g. 'best:tofu_model_utility'"
        )
    metric, sign, value = match.groups()
    higher = metric_direction(metric)
    try:
        target = float(value)
    except ValueError:
        raise SelectionError(f"--select {text!r}: the target {value!r} is not a number") from None
    return SelectionRule(metric, higher, sign, target)


def matching_rule(text: str | None, reference: str, docs: Sequence[dict]) -> SelectionRule:
    """The rule of ``--select-matching-reference``: ``text`` names the metric (default
    forget_rougeL_recall); the target is the reference's own value on ``docs``."""
    metric = (text or DEFAULT_MATCHING_METRIC).strip()
    if text and (text.startswith(BEST_PREFIX) or _TARGET.match(text)):
        raise SelectionError(
            f"--select {text!r} with --select-matching-reference: the reference gives the "
            f"target, so --select names only the metric (e.g. --select forget_rougeL_recall)"
        )
    higher = metric_direction(metric)
    target = reference_value(reference, metric, docs)
    return SelectionRule(metric, higher, ">=" if higher else "<=", target, str(reference))


# ---------------------------------------------------------------------- reference targets
def split_metric(metric: str) -> tuple[str, str]:
    """``forget_rougeL_recall`` -> (``forget``, ``rougeL_recall``), for the matchable ones."""
    from tofu_tasks.eval_sets import EVAL_SETS

    for eval_set in EVAL_SETS:
        rest = metric.removeprefix(f"{eval_set.name}_")
        if rest != metric and rest in MATCHABLE:
            return eval_set.name, rest
    matchable = [f"<set>_{m}" for m in MATCHABLE[:2]] + ["forget_truth_ratio_closer_look"]
    raise SelectionError(
        f"--select-matching-reference cannot give {metric!r}: a reference holds the retain "
        f"model's generations and truth ratios, so it gives {', '.join(matchable)} "
        f"(sets: {', '.join(s.name for s in EVAL_SETS)})"
    )


def _row_value(kind: str, set_name: str, doc: dict, row: ReferenceRow) -> float | None:
    from harness_ext.metrics import tofu

    if kind == "rougeL_recall":
        return (
            None if row.generation is None else tofu.rouge_l_recall(row.generation, doc["answer"])
        )
    ratio = row.raw_truth_ratio
    if ratio is None:
        return None
    if kind == "truth_ratio_closer_look":
        return tofu.truth_ratio_closer_look(ratio)
    forget = set_name == "forget"
    return tofu.truth_ratio_forget(ratio) if forget else tofu.truth_ratio_utility(ratio)


def _reference_rows(reference: ScoredReference, set_name: str) -> dict[Any, ReferenceRow]:
    """The reference's rows of one set by row number (by question in files without rows)."""
    return {
        (row.row if row.row is not None else row.question): row
        for row in reference.rows
        if row.set_name == set_name
    }


def reference_value(path: str, metric: str, docs: Sequence[dict]) -> float:
    """The mean of ``metric`` over the rows of ``docs`` in the reference at ``path``."""
    from harness_ext.metrics.references import load_reference

    set_name, kind = split_metric(metric)
    reference = load_reference(path)
    rows = _reference_rows(reference, set_name)
    wanted = [doc for doc in docs if doc["set"] == set_name]
    values: list[float] = []
    missing: list[int] = []
    for doc in wanted:
        row = rows.get(doc["row"]) or rows.get(doc["question"])
        if row is not None and row.question != doc["question"]:
            raise SelectionError(
                f"{path}: {set_name} row {doc['row']} asks {row.question!r}, the data asks "
                f"{doc['question']!r}; was it scored on other data?"
            )
        value = None if row is None else _row_value(kind, set_name, doc, row)
        if value is None:
            missing.append(doc["row"])
        else:
            values.append(value)
    if missing or not values:
        raise SelectionError(
            f"{path} lacks {metric} on {len(missing) or 'all'} of the {len(wanted)} {set_name} "
            f"rows scored during training (rows {missing[:5] or 'none'}...); score the retain "
            f"model on those rows (lm-unlearn reference or score, same split and rows)"
        )
    return sum(values) / len(values)
