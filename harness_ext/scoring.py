"""From per-sample numbers to the reported TOFU metrics.

A :class:`SampleScore` holds what one document yields (the generation and the per-token NLLs of
its answers); :func:`summarize` turns a list of them into the flat metric dictionary that the
lm-eval tasks and ``lm-unlearn aggregate`` both report. Pure: no model, no lm-eval.

>>> s = SampleScore("retain", "q?", "Paris", "Paris", answer_nll=0.1, base_nll=0.2,
...                 perturbed_nlls=(1.2, 1.2))
>>> round(s.metrics()["truth_ratio"], 4)   # max(0, 1 - 1/e)
0.6321
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness_ext import metrics as M
from tofu_tasks.eval_sets import (
    EVAL_SETS,
    FORGET,
    TOFU_SET_METRICS,
    UTILITY_SETS,
    get_eval_set,
)

NOT_COMPUTED = "N/A"


class ReferenceMismatchError(ValueError):
    """A reference (retain model) does not cover the rows being evaluated."""


@dataclass(frozen=True)
class SampleScore:
    """What one evaluated document yields; NLLs are per-token means."""

    set_name: str
    question: str
    generation: str
    target: str
    answer_nll: float
    base_nll: float
    perturbed_nlls: tuple[float, ...]

    def metrics(self) -> dict[str, float]:
        eval_set = get_eval_set(self.set_name)
        ratio = M.raw_truth_ratio(self.base_nll, self.perturbed_nlls)
        if eval_set.prob_form == "absolute":
            prob = M.length_normalized_prob(self.answer_nll)
        else:
            prob = M.normalized_answer_prob(self.answer_nll, self.perturbed_nlls)
        if eval_set.truth_ratio_form == "forget":
            truth_ratio = M.truth_ratio_forget(ratio)
        else:
            truth_ratio = M.truth_ratio_utility(ratio)
        return {
            "rougeL_recall": M.rouge_l_recall(self.generation, self.target),
            "prob": prob,
            "truth_ratio": truth_ratio,
            "raw_truth_ratio": ratio,
        }


def not_computed(reason: str) -> str:
    """The value reported for a metric that could not be computed, with its reason."""
    return f"{NOT_COMPUTED} ({reason})"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def set_means(items: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of each metric per set, from items carrying a "set" key and metric values."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        for key, value in item.items():
            if key != "set" and is_number(value):
                sums[item["set"]][key].append(float(value))
    return {
        name: {key: sum(values) / len(values) for key, values in per_metric.items()}
        for name, per_metric in sums.items()
    }


def model_utility_components(
    means: Mapping[str, Mapping[str, float]], metric_names: Sequence[str] = TOFU_SET_METRICS
) -> tuple[dict[str, float], list[str]]:
    """The MU components ("<set>_<metric>") present, and the names of the missing ones."""
    components: dict[str, float] = {}
    missing: list[str] = []
    for eval_set in UTILITY_SETS:
        for metric in metric_names:
            name = f"{eval_set.name}_{metric}"
            value = means.get(eval_set.name, {}).get(metric)
            if value is None:
                missing.append(name)
            else:
                components[name] = value
    return components, missing


def model_utility(
    means: Mapping[str, Mapping[str, float]], metric_names: Sequence[str] = TOFU_SET_METRICS
) -> float | str:
    """Harmonic mean of the utility-set components, or a not-computed note naming the gaps."""
    components, missing = model_utility_components(means, metric_names)
    if missing:
        return not_computed("missing " + ", ".join(missing))
    return M.harmonic_mean(list(components.values()))


def align_reference(
    questions: Sequence[str], reference: Mapping[str, float], source: str = "reference"
) -> list[float]:
    """The reference's raw truth ratios for exactly these questions, in order.

    Every evaluated forget question must be in the reference; otherwise the two runs did not
    score the same rows and a KS test between them would be meaningless.
    """
    missing = [q for q in questions if q not in reference]
    if missing:
        raise ReferenceMismatchError(
            f"{source} does not cover the evaluated forget rows: {len(missing)} of "
            f"{len(questions)} questions are absent (first: {missing[0]!r}). The retain-model "
            f"reference must be scored on the same forget split and rows as this run."
        )
    return [reference[q] for q in questions]


def forget_quality_value(
    items: Sequence[Mapping[str, Any]],
    reference: Mapping[str, float] | None,
    source: str = "reference",
) -> float | str:
    """KS forget quality of forget-set items ({"question", "raw_truth_ratio"})."""
    if reference is None:
        return not_computed("no retain reference")
    if not items:
        return not_computed("no forget rows evaluated")
    questions = [item["question"] for item in items]
    ratios = [float(item["raw_truth_ratio"]) for item in items]
    return M.forget_quality(ratios, align_reference(questions, reference, source))


def summarize(
    samples: Iterable[SampleScore], reference: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Every TOFU metric of a run: "<set>_<metric>", tofu_model_utility, forget_quality."""
    per_sample = [(sample, sample.metrics()) for sample in samples]
    means = set_means({"set": s.set_name, **m} for s, m in per_sample)
    result: dict[str, Any] = {}
    for eval_set in EVAL_SETS:
        for metric in TOFU_SET_METRICS:
            if eval_set.name in means:
                result[f"{eval_set.name}_{metric}"] = means[eval_set.name][metric]
    result["tofu_model_utility"] = model_utility(means)
    forget_items = [
        {"question": s.question, "raw_truth_ratio": m["raw_truth_ratio"]}
        for s, m in per_sample
        if s.set_name == FORGET.name
    ]
    result["forget_quality"] = forget_quality_value(forget_items, reference)
    return result


# lm-eval aggregations: each receives the per-document values of one metric. They are pure, so the
# same functions score a run and a --log_samples file.
def aggregate_model_utility(items: Sequence[Mapping[str, Any]]) -> float | str:
    """MU-9 from per-document {"set", "rougeL_recall", "prob", "truth_ratio"} items."""
    return model_utility(set_means(items))


def aggregate_forget_quality(items: Sequence[Mapping[str, Any]]) -> float | str:
    """Forget quality from per-document {"raw_truth_ratio", "reference_ratio"} items."""
    if not items:
        return not_computed("no forget rows evaluated")
    if any(item.get("reference_ratio") is None for item in items):
        return not_computed("no retain reference; set retain_reference")
    return M.forget_quality(
        [float(item["raw_truth_ratio"]) for item in items],
        [float(item["reference_ratio"]) for item in items],
    )
