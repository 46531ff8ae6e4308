"""The one definition of every TOFU eval set.

Tasks, the legacy-log reader and the reports all read the sets from here, so the split, the row
convention, the base answer of the truth ratio and the metric forms are written down once.
No lm-eval import: this module is safe to use from pure metric code.

>>> FORGET.source_file("forget05")
'forget05_perturbed'
>>> [s.name for s in UTILITY_SETS]
['retain', 'real_authors', 'world_facts']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FORGET_SPLITS = ("forget01", "forget05", "forget10")
# TOFU writes 20 questions per fictitious author, in consecutive rows of every split.
ROWS_PER_AUTHOR = 20
RETAIN_SPLIT_FOR = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}

RowSelection = Literal["legacy", "full"]
TextSource = Literal["generation", "ground_truth", "pre_unlearning"]


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set of the fictitious scenario.

    prob_form: "absolute" reports p̃(answer); "normalized" reports p̃(answer) / (p̃(answer) +
    Σ p̃(perturbed)), TOFU's form for the multiple-choice-like Real Authors / World Facts sets.
    truth_ratio_form: "forget" reports min(R, 1/R); "utility" reports max(0, 1 − 1/R).
    output_reference: what the model said before unlearning, the reference of cosine similarity:
    the dataset answer (TOFU's target memorised it) or the pre-unlearning model's own output.
    entailment: the (premise, hypothesis) texts of the entailment score, each one of
    "generation", "ground_truth" or "pre_unlearning".
    """

    name: str
    file: str  # source file without suffix; "{forget}" is replaced by the forget split
    base_answer_field: str
    n_perturbed: int
    legacy_rows: int | None
    prob_form: Literal["absolute", "normalized"]
    truth_ratio_form: Literal["forget", "utility"]
    legacy_log_file: str
    output_reference: TextSource
    entailment: tuple[TextSource, TextSource]

    def needs_pre_unlearning_output(self) -> bool:
        return "pre_unlearning" in (self.output_reference, *self.entailment)

    def source_file(self, forget_split: str) -> str:
        return self.file.format(forget=forget_split)

    def row_count(self, available: int, rows: RowSelection = "legacy") -> int:
        """How many leading rows of the source file are evaluated."""
        if rows not in ("legacy", "full"):
            raise ValueError(f"rows must be 'legacy' or 'full', got {rows!r}")
        if rows == "full" or self.legacy_rows is None:
            return available
        return min(available, self.legacy_rows)


FORGET = EvalSet(
    name="forget",
    file="{forget}_perturbed",
    base_answer_field="paraphrased_answer",
    n_perturbed=5,
    legacy_rows=300,
    prob_form="absolute",
    truth_ratio_form="forget",
    legacy_log_file="eval_log_forget.json",
    output_reference="ground_truth",
    entailment=("generation", "ground_truth"),
)
RETAIN = EvalSet(
    name="retain",
    file="retain_perturbed",
    base_answer_field="paraphrased_answer",
    n_perturbed=5,
    legacy_rows=300,
    prob_form="absolute",
    truth_ratio_form="utility",
    legacy_log_file="eval_log.json",
    output_reference="ground_truth",
    entailment=("ground_truth", "generation"),
)
REAL_AUTHORS = EvalSet(
    name="real_authors",
    file="real_authors_perturbed",
    base_answer_field="answer",
    n_perturbed=3,
    legacy_rows=None,
    prob_form="normalized",
    truth_ratio_form="utility",
    legacy_log_file="eval_real_author_wo_options.json",
    output_reference="pre_unlearning",
    entailment=("pre_unlearning", "generation"),
)
WORLD_FACTS = EvalSet(
    name="world_facts",
    file="world_facts_perturbed",
    base_answer_field="answer",
    n_perturbed=3,
    legacy_rows=None,
    prob_form="normalized",
    truth_ratio_form="utility",
    legacy_log_file="eval_real_world_wo_options.json",
    output_reference="pre_unlearning",
    entailment=("pre_unlearning", "generation"),
)

EVAL_SETS: tuple[EvalSet, ...] = (FORGET, RETAIN, REAL_AUTHORS, WORLD_FACTS)
UTILITY_SETS: tuple[EvalSet, ...] = (RETAIN, REAL_AUTHORS, WORLD_FACTS)

# The real-world scenario (realworld_unlearn): facts about real people the model knew before
# unlearning. Cosine similarity compares with what the model said before unlearning; entailment
# has the generation as premise and the golden answer as hypothesis, on both sets.
REALWORLD_FORGET = EvalSet(
    name="forget",
    file="realworld:forget",
    base_answer_field="paraphrased_answer",
    n_perturbed=5,
    legacy_rows=None,
    prob_form="absolute",
    truth_ratio_form="forget",
    legacy_log_file="",
    output_reference="pre_unlearning",
    entailment=("generation", "ground_truth"),
)
NEIGHBOR = EvalSet(
    name="neighbor",
    file="realworld:neighbor",
    base_answer_field="paraphrased_answer",
    n_perturbed=5,
    legacy_rows=None,
    prob_form="absolute",
    truth_ratio_form="utility",
    legacy_log_file="",
    output_reference="pre_unlearning",
    entailment=("generation", "ground_truth"),
)
REALWORLD_SETS: tuple[EvalSet, ...] = (REALWORLD_FORGET, NEIGHBOR)
REALWORLD_UTILITY_SETS: tuple[EvalSet, ...] = (NEIGHBOR,)

# Lookup by name: the real-world forget set shares its name (and its probability and truth-ratio
# forms) with TOFU's; documents that carry scenario "realworld" resolve through eval_set_for().
EVAL_SETS_BY_NAME: dict[str, EvalSet] = {s.name: s for s in (*EVAL_SETS, NEIGHBOR)}

# Per-set metrics of the TOFU benchmark, reported as "<set>_<metric>".
TOFU_SET_METRICS = ("rougeL_recall", "prob", "truth_ratio")
# The closer-look paper adds three output-quality metrics; MU-18 uses all six.
OUTPUT_METRICS = ("token_entropy", "cosine_similarity", "entailment")
CLOSER_LOOK_SET_METRICS = TOFU_SET_METRICS + OUTPUT_METRICS


def eval_set_for(doc: dict) -> EvalSet:
    """The eval set of a task document (its scenario decides between same-named sets)."""
    if doc.get("scenario") == "realworld":
        return {s.name: s for s in REALWORLD_SETS}[doc["set"]]
    return get_eval_set(doc["set"])


def get_eval_set(name: str) -> EvalSet:
    try:
        return EVAL_SETS_BY_NAME[name]
    except KeyError:
        known = ", ".join(EVAL_SETS_BY_NAME)
        raise ValueError(f"unknown eval set {name!r}; known sets: {known}") from None
