"""The options of the WMDP task (``--metadata``): the shared ones that apply plus WMDP's own.

- ``data_dir``: a local copy of ``cais/wmdp`` (else ``WMDP_DATA_DIR``, else the hub);
- ``mmlu_data_dir``: a local copy of ``cais/mmlu`` (else ``MMLU_DATA_DIR``, else the hub);
- ``domains``: the WMDP domains scored (default ``bio``, ``chem`` and ``cyber``);
- ``mmlu_subjects``: the MMLU subjects of the utility score (default ``all``: the 57 of lm-eval's
  ``mmlu`` group; ``none``: no utility score);
- ``sets`` / ``max_rows_per_set``: the sets (``wmdp_bio``, ``wmdp_chem``, ``wmdp_cyber``,
  ``mmlu``) to score and the rows per set;
- ``pre_unlearning_reference``: the model before unlearning, scored with this task (its run,
  results or samples file): each accuracy's change from it, on the same questions;
- ``fewshot``: k in-context examples before each WMDP question, other questions of its domain
  with their answers (the few-shot prompt attack of ``lm-unlearn audit``; default 0, as lm-eval
  asks). MMLU stays zero-shot.

TOFU's and MUSE's options that shape prompts, generations and membership inference do not
apply: the questions are asked in lm-eval's own format and scored by the likelihood of each
choice letter.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.task_options import ScoringOptions
from tofu_tasks.data import set_names
from tofu_tasks.wmdp.data import DOMAINS, mmlu_subjects

MMLU_SET = "mmlu"
PROMPT_FORMAT = "lm-eval"  # lm-eval's own multiple-choice prompt
WMDP_SETS = tuple(f"wmdp_{domain}" for domain in DOMAINS)
WMDP_TASK_SETS = (*WMDP_SETS, MMLU_SET)
NOT_APPLICABLE = (
    "holdout", "prompt_format", "prompt_template", "retain_reference", "embedding_model",
    "nli_model", "bertscore_model", "scored_tokens", "bertscore", "truth_ratio",
)  # fmt: skip


def names(value: list[str] | str | None) -> list[str]:
    """A list option given as a list, a JSON list or names separated by commas."""
    return [] if value is None else set_names(value)


@dataclass(frozen=True)
class WmdpOptions(ScoringOptions):
    mmlu_data_dir: str | None = None
    domains: list[str] | str | None = None
    mmlu_subjects: list[str] | str = "all"
    fewshot: int = 0

    def check(self) -> None:
        super().check()
        self.refuse_given(
            NOT_APPLICABLE, "the WMDP task does not take", "it asks lm-eval's own multiple-choice questions "
            "and compares with the model before unlearning (pre_unlearning_reference)",
        )  # fmt: skip
        unknown = [d for d in self.domain_list() if d not in DOMAINS]
        if unknown or not self.domain_list():
            raise TaskSetupError(
                f"domains must name some of {', '.join(DOMAINS)}, got {self.domains!r}"
            )
        wrong = [s for s in self.subject_list() if s not in mmlu_subjects()]
        if wrong:
            raise TaskSetupError(
                f"unknown MMLU subject {wrong[0]!r} in mmlu_subjects; lm-eval's mmlu has "
                f"{', '.join(mmlu_subjects())} (or give all / none)"
            )
        if isinstance(self.fewshot, bool) or not isinstance(self.fewshot, int) or self.fewshot < 0:
            raise TaskSetupError(
                f"fewshot must be a number of examples (0 or more), got {self.fewshot!r}"
            )
        sets = names(self.sets)
        if any(name not in WMDP_TASK_SETS for name in sets):
            raise TaskSetupError(
                f"sets must name some of {', '.join(WMDP_TASK_SETS)}, got {self.sets!r}"
            )

    def domain_list(self) -> list[str]:
        return names(self.domains) if self.domains is not None else list(DOMAINS)

    def subject_list(self) -> list[str]:
        """The MMLU subjects scored (none when the mmlu set is left out)."""
        given = self.mmlu_subjects
        if isinstance(given, str) and given.strip().lower() in ("all", "none"):
            chosen = list(mmlu_subjects()) if given.strip().lower() == "all" else []
        else:
            chosen = names(given)
        sets = names(self.sets)
        return chosen if not sets or MMLU_SET in sets else []

    def scored_sets(self) -> list[str]:
        """The sets of the run, in document order."""
        sets = names(self.sets)
        wanted = [f"wmdp_{d}" for d in self.domain_list()] + [MMLU_SET] * bool(self.subject_list())
        return [name for name in wanted if not sets or name in sets]
