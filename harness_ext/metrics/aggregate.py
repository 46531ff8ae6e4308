"""From per-sample numbers to the reported metrics.

A :class:`SampleScore` holds what one document yields: the generation and the per-token NLLs of its
answers, plus the output-quality scores (token entropy, cosine similarity, entailment) when they
were computed. :func:`summarize` turns a list of them into the flat metric dictionary that the
lm-eval tasks and ``lm-unlearn aggregate`` both report. Pure: no model, no lm-eval.

A value that cannot be computed is a string starting with ``"N/A"`` and giving the reason, never
a number that could be mistaken for a score.

>>> mean_or_reason([0.25, 0.75]), mean_or_reason([0.5, "N/A (no reference)"])
(0.5, 'N/A (no reference)')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness_ext.metrics import tofu as M
from harness_ext.metrics.eval_set import (
    CLOSER_LOOK_SET_METRICS,
    FORGET_SET,
    TOFU_SET_METRICS,
    EvalSet,
)

NOT_COMPUTED = "N/A"
FORGET_EFFICACY_METRICS = (
    "rougeL_recall",
    "prob",
    "truth_ratio_closer_look",
    "cosine_similarity",
    "entailment",
)


NO_PERTURBED = "truth_ratio is off: only the ground-truth answer was scored"


class ReferenceMismatchError(ValueError):
    """A reference does not cover the rows being evaluated."""


def not_computed(reason: str) -> str:
    """The value reported for a metric that could not be computed, with its reason."""
    return f"{NOT_COMPUTED} ({reason})"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SampleScore:
    """What one evaluated document yields; NLLs are per-token means.

    ``output_scores`` holds token_entropy / cosine_similarity / entailment (numbers, or
    not-computed strings) when they were scored.
    """

    eval_set: EvalSet
    question: str
    generation: str
    target: str
    answer_nll: float
    base_nll: float
    perturbed_nlls: tuple[float, ...]
    output_scores: Mapping[str, float | str] = field(default_factory=dict)
    row: int | None = None  # the row in the set's source file, when known

    @property
    def set_name(self) -> str:
        return self.eval_set.name

    def metrics(self) -> dict[str, float | str]:
        eval_set = self.eval_set
        if not self.perturbed_nlls:  # only the ground truth was scored (truth_ratio: false)
            return self._ground_truth_metrics(eval_set)
        ratio = M.raw_truth_ratio(self.base_nll, self.perturbed_nlls)
        if eval_set.prob_form == "absolute":
            prob = M.length_normalized_prob(self.answer_nll)
        else:
            prob = M.normalized_answer_prob(self.answer_nll, self.perturbed_nlls)
        values: dict[str, float | str] = {
            "rougeL_recall": M.rouge_l_recall(self.generation, self.target),
            "prob": prob,
            "raw_truth_ratio": ratio,
        }
        if eval_set.truth_ratio_form == "forget":
            values["truth_ratio"] = M.truth_ratio_forget(ratio)
            values["truth_ratio_closer_look"] = M.truth_ratio_closer_look(ratio)
        else:
            values["truth_ratio"] = M.truth_ratio_utility(ratio)
        values.update(self.output_scores)
        return values

    def _ground_truth_metrics(self, eval_set: EvalSet) -> dict[str, float | str]:
        """Without the perturbed answers: ROUGE-L, and the probability where it is absolute."""
        off = not_computed(NO_PERTURBED)
        absolute = eval_set.prob_form == "absolute"
        values: dict[str, float | str] = {
            "rougeL_recall": M.rouge_l_recall(self.generation, self.target),
            "prob": M.length_normalized_prob(self.answer_nll) if absolute else off,
            "raw_truth_ratio": off,
            "truth_ratio": off,
        }
        if eval_set.truth_ratio_form == "forget":
            values["truth_ratio_closer_look"] = off
        values.update(self.output_scores)
        return values


def mean_or_reason(values: Sequence[Any]) -> float | str:
    """Mean of numbers; the first not-computed reason if any value is one."""
    reasons = [v for v in values if isinstance(v, str)]
    if reasons:
        return reasons[0]
    if not values:
        return not_computed("no rows")
    return sum(float(v) for v in values) / len(values)


def set_values(items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | str]]:
    """Per set, each metric's mean (or its not-computed reason), from per-document items."""
    collected: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        for key, value in item.items():
            if key != "set" and (is_number(value) or _is_reason(value)):
                collected[item["set"]][key].append(value)
    return {
        name: {key: mean_or_reason(values) for key, values in per_metric.items()}
        for name, per_metric in collected.items()
    }


def _is_reason(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(NOT_COMPUTED)


def _ratio_not_computed(items: Sequence[Mapping[str, Any]]) -> str | None:
    """Why forget quality cannot be computed from these items' truth ratios (truth_ratio off)."""
    return next((i["raw_truth_ratio"] for i in items if _is_reason(i["raw_truth_ratio"])), None)


def model_utility_components(
    values: Mapping[str, Mapping[str, Any]],
    metric_names: Sequence[str],
    utility_sets: Sequence[EvalSet],
) -> tuple[dict[str, float], dict[str, str]]:
    """The MU components ("<set>_<metric>") present, and the missing ones with their reason."""
    components: dict[str, float] = {}
    missing: dict[str, str] = {}
    for eval_set in utility_sets:
        for metric in metric_names:
            name = f"{eval_set.name}_{metric}"
            value = values.get(eval_set.name, {}).get(metric)
            if is_number(value):
                components[name] = float(value)
            else:
                missing[name] = value or "not scored"
    return components, missing


def model_utility(
    values: Mapping[str, Mapping[str, Any]],
    metric_names: Sequence[str],
    utility_sets: Sequence[EvalSet],
) -> float | str:
    """Harmonic mean of the utility-set components, or a note naming what is missing."""
    components, missing = model_utility_components(values, metric_names, utility_sets)
    if missing:
        return not_computed("missing " + _group_missing(missing, utility_sets))
    return M.harmonic_mean(list(components.values()))


def _group_missing(names: Iterable[str], sets: Sequence[EvalSet]) -> str:
    """ "retain_entailment, real_authors_entailment" -> "entailment of retain, real_authors"."""
    by_metric: dict[str, list[str]] = defaultdict(list)
    for name in names:
        set_name = next(s.name for s in sets if name.startswith(s.name + "_"))
        by_metric[name[len(set_name) + 1 :]].append(set_name)
    return "; ".join(f"{metric} of {', '.join(sets)}" for metric, sets in by_metric.items())


def forget_efficacy_value(forget: Mapping[str, Any]) -> float | str:
    """FE from the forget set's means, or a note naming what is missing."""
    missing = [name for name in FORGET_EFFICACY_METRICS if not is_number(forget.get(name))]
    if missing:
        return not_computed("missing " + ", ".join(f"forget_{m}" for m in missing))
    return M.forget_efficacy(*(float(forget[name]) for name in FORGET_EFFICACY_METRICS))


RowKey = tuple[int | None, str]  # (row in the source file, question)


def align_reference(
    wanted: Sequence[RowKey], available: Sequence[tuple[int | None, str, Any]], source: str
) -> list[Any]:
    """The reference's value for each evaluated (row, question), in order.

    Rows are matched by their row number in the set's source file, and the question must agree
    (TOFU has a question that occurs twice, so the text alone cannot identify a row). A
    reference that does not record rows is matched by question, which must then be unique.
    Every evaluated row must be in the reference; otherwise the two runs did not score the same
    rows and comparing them would be meaningless.
    """
    by_row = {row: (question, value) for row, question, value in available if row is not None}
    by_question: dict[str, list[Any]] = defaultdict(list)
    for _, question, value in available:
        by_question[question].append(value)
    values, missing = [], []
    for row, question in wanted:
        if row is not None and by_row:
            if row not in by_row:
                missing.append(f"row {row}")
                continue
            theirs, value = by_row[row]
            if theirs != question:
                raise ReferenceMismatchError(
                    f"{source}: row {row} holds another question ({theirs!r}, here {question!r}); "
                    f"a reference must be scored on the same data as this run"
                )
            values.append(value)
        elif len(by_question.get(question, [])) == 1:
            values.append(by_question[question][0])
        elif question in by_question:
            raise ReferenceMismatchError(
                f"{source}: the question {question!r} occurs {len(by_question[question])} times "
                f"and the reference records no row numbers; score the reference again"
            )
        else:
            missing.append(repr(question))
    if missing:
        raise ReferenceMismatchError(
            f"{source} does not cover the evaluated rows: {len(missing)} of {len(wanted)} are "
            f"absent (first: {missing[0]}). A reference must be scored on the same split and "
            f"rows as this run."
        )
    return values


def forget_quality_value(
    items: Sequence[Mapping[str, Any]],
    reference: Sequence[tuple[int | None, str, float]] | None,
    source: str = "reference",
) -> float | str:
    """KS forget quality of forget-set items ({"row", "question", "raw_truth_ratio"}) against
    the reference's (row, question, raw truth ratio) rows."""
    if reference is None:
        return not_computed("no retain reference")
    if not items:
        return not_computed("no forget rows evaluated")
    wanted = [(item.get("row"), item["question"]) for item in items]
    if reason := _ratio_not_computed(items):
        return reason
    ratios = [float(item["raw_truth_ratio"]) for item in items]
    return M.forget_quality(ratios, align_reference(wanted, reference, source))


def summarize(
    samples: Iterable[SampleScore],
    sets: Sequence[EvalSet],
    utility_sets: Sequence[EvalSet],
    reference: Sequence[tuple[int | None, str, float]] | None = None,
) -> dict[str, Any]:
    """Every metric of a run over ``sets``: "<set>_<metric>", the truth-ratio forms, MU-9 and
    MU-18 over ``utility_sets``, FE, FQ (against the retain model's forget truth ratios)."""
    per_sample = [(sample, sample.metrics()) for sample in samples]
    values = set_values({"set": s.set_name, **m} for s, m in per_sample)
    result: dict[str, Any] = {}
    for eval_set in sets:
        for metric in CLOSER_LOOK_SET_METRICS:
            value = values.get(eval_set.name, {}).get(metric)
            if value is not None:
                result[f"{eval_set.name}_{metric}"] = value
    forget_values = values.get(FORGET_SET, {})
    if "truth_ratio_closer_look" in forget_values:
        result["forget_truth_ratio_closer_look"] = forget_values["truth_ratio_closer_look"]
    result["tofu_model_utility"] = model_utility(values, TOFU_SET_METRICS, utility_sets)
    result["model_utility"] = model_utility(values, CLOSER_LOOK_SET_METRICS, utility_sets)
    result["forget_efficacy"] = forget_efficacy_value(forget_values)
    forget_items = [
        {"row": s.row, "question": s.question, "raw_truth_ratio": m["raw_truth_ratio"]}
        for s, m in per_sample
        if s.set_name == FORGET_SET
    ]
    result["forget_quality"] = forget_quality_value(forget_items, reference)
    return result


# lm-eval aggregations: each receives the per-document values of one metric. They are pure, so the
# same functions score a run and a --log_samples file.
# A ``None`` item is a placeholder of a document of another set (see the task's
# ``_placeholders``): skipped.
def aggregate_mean_or_na(items: Sequence[Any]) -> float | str:
    """Mean of per-document values, or the reason they could not be computed."""
    return mean_or_reason([item for item in items if item is not None])


def aggregate_forget_efficacy(items: Sequence[Mapping[str, Any]]) -> float | str:
    """FE from per-document forget-set items."""
    items = [item for item in items if item is not None]
    if not items:
        return not_computed("no forget rows evaluated")
    return forget_efficacy_value(set_values(items).get(FORGET_SET, {}))


def aggregate_forget_quality(items: Sequence[Mapping[str, Any]]) -> float | str:
    """Forget quality from per-document {"raw_truth_ratio", "reference_ratio"} items."""
    items = [item for item in items if item is not None]
    if not items:
        return not_computed("no forget rows evaluated")
    if reason := _ratio_not_computed(items):
        return reason
    if any(item.get("reference_ratio") is None for item in items):
        return not_computed("no retain reference; set retain_reference")
    return M.forget_quality(
        [float(item["raw_truth_ratio"]) for item in items],
        [float(item["reference_ratio"]) for item in items],
    )
