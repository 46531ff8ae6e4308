"""The one definition of every TOFU eval set (and of the real-world sets).

Tasks, the legacy-log reader and the reports all read the sets from here, so the split, the row
convention, the base answer of the truth ratio and the metric forms are written down once.
No lm-eval import: this module is safe to use from pure metric code.

>>> FORGET.source_file("forget05")
'forget05_perturbed'
>>> [s.name for s in UTILITY_SETS]
['retain', 'real_authors', 'world_facts']
"""

from __future__ import annotations

from harness_ext.metrics.eval_set import (  # noqa: F401  (the benchmark's names for them)
    CLOSER_LOOK_SET_METRICS,
    OUTPUT_METRICS,
    TOFU_SET_METRICS,
    EvalSet,
    RowSelection,
    TextSource,
)

FORGET_SPLITS = ("forget01", "forget05", "forget10")
# TOFU writes 20 questions per fictitious author, in consecutive rows of every split.
ROWS_PER_AUTHOR = 20
RETAIN_SPLIT_FOR = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}

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

# Lookup by name of TOFU's sets (a task resolves its own documents' sets: UnlearningTask.eval_set).
EVAL_SETS_BY_NAME: dict[str, EvalSet] = {s.name: s for s in (*EVAL_SETS, NEIGHBOR)}


def get_eval_set(name: str) -> EvalSet:
    try:
        return EVAL_SETS_BY_NAME[name]
    except KeyError:
        known = ", ".join(EVAL_SETS_BY_NAME)
        raise ValueError(f"unknown eval set {name!r}; known sets: {known}") from None
