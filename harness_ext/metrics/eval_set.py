"""What an eval set is: the definition every benchmark gives of each set it scores.

A benchmark (TOFU, the real-world set, ...) writes one :class:`EvalSet` per set it scores, once,
in its own package (``tofu_tasks/eval_sets.py``); the metric code here reads the set's rules
(which probability form, which truth-ratio form, what cosine similarity and entailment compare)
from the set it is handed, never from a benchmark by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


# The per-set metrics TOFU defines, reported as "<set>_<metric>".
TOFU_SET_METRICS = ("rougeL_recall", "prob", "truth_ratio")
# The closer-look paper adds three output-quality metrics; MU-18 uses all six.
OUTPUT_METRICS = ("token_entropy", "cosine_similarity", "entailment")
CLOSER_LOOK_SET_METRICS = TOFU_SET_METRICS + OUTPUT_METRICS
FORGET_SET = "forget"  # the name of the set to forget in every benchmark
