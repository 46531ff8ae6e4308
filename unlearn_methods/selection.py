"""Checkpoint selection rules of ``lm-unlearn train --select``.

A rule keeps one of the checkpoints evaluated during training (``--eval-every``):

* ``METRIC<=VALUE`` (also ``<``, ``>=``, ``>``): the first evaluated checkpoint that reaches the
  target;
* ``best:METRIC``: the best evaluated checkpoint by the metric's declared ideal
  (:mod:`harness_ext.metrics.ideals`): the highest utility, the lowest forget ROUGE-L, and, for
  privleak, the membership-inference AUCs and TOFU's forget truth ratio, the value closest to
  the retain model's (privleak 0; an AUC: the retain model's own AUC on the rows evaluated,
  read from the evaluations' ``retain_reference``);
* ``closest:METRIC``: the checkpoint whose value is closest to the retain model's on the rows
  evaluated (e.g. ``closest:forget_rougeL_recall``), read from ``--select-matching-reference``
  or the evaluations' ``retain_reference``;
* ``--select-matching-reference REF``: a target taken from the retain model: its own value of the
  metric (default ``forget_rougeL_recall``) on the rows scored during training, read from a
  reference or results file; reached when the model is at least as far as the retain model
  (``<=`` for metrics where lower means more forgotten, ``>=`` where higher is better; for a
  metric whose ideal is the retain model's value, the checkpoint closest to it is kept).

>>> rule = parse_rule("forget_rougeL_recall<=0.4")
>>> rule.text, rule.reached(0.35), rule.reached(0.41)
('forget_rougeL_recall<=0.4', True, False)
>>> parse_rule("best:tofu_model_utility").improves(0.5, 0.4)
True
>>> rule = parse_rule("best:privleak")   # closest to 0: -5 beats +125
>>> rule.improves(-5.0, 125.0), rule.improves(125.0, 3.0)
(True, False)
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness_ext.metrics.ideals import CLOSEST_PREFIX, RETAIN, Ideal, ideal_of

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
DEFAULT_MATCHING_METRIC = "forget_rougeL_recall"
BEST_PREFIX = "best:"
_TARGET = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|>=|<|>)\s*(\S+)\s*$")

# Gives the retain model's value of a metric on the rows evaluated, or raises SelectionError.
RetainLookup = Callable[[str], float]


class SelectionError(ValueError):
    """A selection rule that cannot be applied."""


def check_metric(name: str) -> None:
    """An unknown name is refused, listing the known ones (every benchmark's task's)."""
    from tofu_tasks.lume.metric_list import metric_list as lume_metrics
    from tofu_tasks.metric_list import known_metrics
    from tofu_tasks.muse.metric_list import metric_list as muse_metrics

    others = [entry["metric"] for entry in (*muse_metrics(), *lume_metrics())]
    known = list(dict.fromkeys([*known_metrics(), *others]))
    if name not in known:
        raise SelectionError(
            f"unknown metric {name!r} in --select; the tasks report: {', '.join(known)}"
        )


@dataclass(frozen=True)
class SelectionRule:
    """Which evaluated checkpoint to keep (see the module docs). ``ideal_value``: the value a
    ``retain``-ideal rule keeps the checkpoint closest to."""

    metric: str
    ideal: Ideal
    operator: str | None = None  # None: keep the best value
    target: float | None = None
    reference: str | None = None  # where the target comes from (--select-matching-reference)
    ideal_value: float | None = None

    @property
    def best(self) -> bool:
        return self.operator is None

    @property
    def higher_is_better(self) -> bool | None:
        return self.ideal.higher_is_better

    @property
    def text(self) -> str:
        if self.best:
            prefix = CLOSEST_PREFIX if self.ideal != ideal_of(self.metric) else BEST_PREFIX
            return f"{prefix}{self.metric}"
        return f"{self.metric}{self.operator}{self.target:.6g}"

    def reached(self, value: float) -> bool:
        return OPERATORS[self.operator](value, self.target)

    def improves(self, value: float, than: float) -> bool:
        return self.ideal.better(value, than, self.ideal_value)

    def describe(self) -> dict[str, Any]:
        return {
            "rule": self.text,
            "metric": self.metric,
            "operator": self.operator,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "ideal": self.ideal.kind,
            "ideal_value": self.ideal.target(self.ideal_value),
            "reference": self.reference,
        }


def parse_rule(text: str, retain: RetainLookup | None = None) -> SelectionRule:
    """``METRIC<=VALUE`` (``<``, ``>=``, ``>``), ``best:METRIC`` or ``closest:METRIC``;
    ``retain`` gives the retain model's value where the rule needs one."""
    if text.startswith((BEST_PREFIX, CLOSEST_PREFIX)):
        closest = text.startswith(CLOSEST_PREFIX)
        metric = text.split(":", 1)[1].strip()
        check_metric(metric)
        ideal = Ideal(RETAIN) if closest and ideal_of(metric).kind != RETAIN else ideal_of(metric)
        return _best_rule(metric, ideal, retain, text)
    match = _TARGET.match(text)
    if not match:
        raise SelectionError(
            f"--select {text!r}: write METRIC<=VALUE (or <, >=, >), e.g. "
            f"'forget_rougeL_recall<=0.40', best:METRIC, e.g. 'best:tofu_model_utility', or "
            f"closest:METRIC, e.g. 'closest:forget_rougeL_recall'"
        )
    metric, sign, value = match.groups()
    check_metric(metric)
    try:
        target = float(value)
    except ValueError:
        raise SelectionError(f"--select {text!r}: the target {value!r} is not a number") from None
    return SelectionRule(metric, ideal_of(metric), sign, target)


def _best_rule(
    metric: str, ideal: Ideal, retain: RetainLookup | None, text: str, reference: str | None = None
) -> SelectionRule:
    if ideal.kind != RETAIN or ideal.fixed is not None:
        return SelectionRule(metric, ideal, reference=reference)
    if retain is None:
        raise SelectionError(
            f"--select {text!r}: the best {metric} is the retain model's own value on the rows "
            f"evaluated; give the retain model's scoring run with --eval-metadata "
            f"'{{\"retain_reference\": PATH}}' or --select-matching-reference PATH"
        )
    return SelectionRule(metric, ideal, reference=reference, ideal_value=retain(metric))


def matching_rule(text: str | None, reference: str, docs: Sequence[dict]) -> SelectionRule:
    """The rule of ``--select-matching-reference``: ``text`` names the metric (default
    forget_rougeL_recall); the target is the reference's own value on ``docs``."""
    metric = (text or DEFAULT_MATCHING_METRIC).strip()
    if text and (text.startswith((BEST_PREFIX, CLOSEST_PREFIX)) or _TARGET.match(text)):
        raise SelectionError(
            f"--select {text!r} with --select-matching-reference: the reference gives the "
            f"target, so --select names only the metric (e.g. --select forget_rougeL_recall)"
        )
    check_metric(metric)
    ideal = ideal_of(metric)
    target = reference_value(reference, metric, docs)
    if ideal.kind == RETAIN:  # no side to reach: the checkpoint closest to the reference's
        return SelectionRule(metric, ideal, reference=str(reference), ideal_value=target)
    sign = ">=" if ideal.higher_is_better else "<="
    return SelectionRule(metric, ideal, sign, target, str(reference))


# ---------------------------------------------------------------------- reference targets
def split_metric(metric: str) -> tuple[str, str]:
    """``forget_rougeL_recall`` -> (``forget``, ``rougeL_recall``), for the metrics a
    reference's rows give back."""
    from harness_ext.metrics.retain_values import MATCHABLE
    from tofu_tasks.eval_sets import EVAL_SETS

    for eval_set in EVAL_SETS:
        rest = metric.removeprefix(f"{eval_set.name}_")
        if rest != metric and rest in MATCHABLE:
            return eval_set.name, rest
    sets = ", ".join(s.name for s in EVAL_SETS)
    raise SelectionError(
        f"the retain model's {metric} cannot be read from a reference: it gives "
        f"<set>_{{{', '.join(MATCHABLE)}}} (sets: {sets}) and, with holdout rows, the "
        f"mia_<attack>_auc values"
    )


def reference_value(path: str, metric: str, docs: Sequence[dict]) -> float:
    """The retain model's value of ``metric`` on the rows of ``docs``, from the reference at
    ``path``: a set's ROUGE-L, probability or truth ratio, or a membership-inference AUC."""
    from harness_ext.metrics import retain_values as values
    from tofu_tasks.reference_files import load_reference

    try:
        reference = load_reference(path)
        if metric.startswith(values.MIA_PREFIX) and metric in values.MIA_METRICS:
            attack = metric.removeprefix(values.MIA_PREFIX).removesuffix("_auc")
            value = values.mia_auc_value(reference, docs, attack)
        else:
            value = values.set_metric_value(reference, docs, *split_metric(metric))
    except values.RetainValueError as err:
        raise SelectionError(str(err)) from None
    if isinstance(value, str):
        raise SelectionError(
            f"{path}: {value.removeprefix('N/A (').removesuffix(')')}; score the retain model on "
            f"those rows (lm-unlearn reference or score, same split and rows)"
        )
    return value
