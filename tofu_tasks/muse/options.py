"""The options of the MUSE tasks (``--metadata``): the shared scoring options plus MUSE's own.

- ``corpus``: ``news`` or ``books`` (set by the task's YAML);
- ``data_dir``: a local copy of the corpus's dataset folder (else ``MUSE_DATA_DIR``, else the hub);
- ``sets`` / ``max_rows_per_set``: the criteria's sets (below) to score, and rows per set;
- ``forget_texts``: the member texts of membership inference, as ``config/split`` of the corpus
  (default ``privleak/forget``; News's ``scal/forget_2`` or ``sust/forget_3`` score the forget
  set a scalability or sustainability run unlearned);
- ``retain_reference``: the retain model's run of the same task: privleak against its Min-K% AUC
  on the same rows, and the reference attack;
- ``privleak_reference_auc``: a fixed AUC to compare with instead (open-unlearning's fallback is
  0.5), recorded in the results; without either, privleak reads "N/A".

The options that shape TOFU's prompts and answers (``prompt_format``, ``prompt_template``,
``scored_tokens``, ``truth_ratio``, ``holdout``, the output-quality models, the pre-unlearning
reference) do not apply: MUSE asks in its own plain format and scores fixed spans.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.task_options import ScoringOptions
from harness_ext.metrics.eval_set import FORGET_SET
from harness_ext.metrics.privacy import HOLDOUT
from tofu_tasks.muse.data import CONFIG_FIELDS, CORPORA

KNOWMEM_SETS = ("forget_knowmem", "retain_knowmem")
VERBMEM_SET = "forget_verbmem"
# the sets of a MUSE run, in document order: knowledge QA, verbatim continuation, and the
# member (forget) and non-member (holdout) texts of privacy leakage
MUSE_SETS = (*KNOWMEM_SETS, VERBMEM_SET, FORGET_SET, HOLDOUT)
DEFAULT_FORGET_TEXTS = "privleak/forget"
PROMPT_FORMAT = "muse"  # MUSE's plain "Question: ...\nAnswer: " with in-context examples
NOT_APPLICABLE = (
    "prompt_format", "prompt_template", "pre_unlearning_reference", "holdout", "embedding_model",
    "nli_model", "bertscore_model", "scored_tokens",
)  # fmt: skip


@dataclass(frozen=True)
class MuseOptions(ScoringOptions):
    corpus: str = "news"
    forget_texts: str = DEFAULT_FORGET_TEXTS
    privleak_reference_auc: float | None = None

    def check(self) -> None:
        super().check()
        if self.corpus not in CORPORA:
            raise TaskSetupError(f"corpus must be one of {', '.join(CORPORA)}, got {self.corpus!r}")
        self.refuse_given(
            NOT_APPLICABLE, "the MUSE tasks do not take", "MUSE asks in its own plain format, scores fixed "
            "spans and has its own holdout texts",
        )  # fmt: skip
        self.forget_texts_split()
        if self.privleak_reference_auc is not None:
            value = float(self.privleak_reference_auc)
            if not 0.0 <= value < 1.0:
                raise TaskSetupError(
                    f"privleak_reference_auc must be in [0, 1), got {self.privleak_reference_auc!r}"
                )
            if self.retain_reference:
                raise TaskSetupError(
                    "give retain_reference or privleak_reference_auc, not both: privleak compares "
                    "with one AUC"
                )

    def forget_texts_split(self) -> tuple[str, str]:
        """(config, split) of the member texts."""
        config, _, split = str(self.forget_texts).partition("/")
        if not split or CONFIG_FIELDS.get(config) != ("text",):
            text_configs = [c for c, f in CONFIG_FIELDS.items() if f == ("text",)]
            raise TaskSetupError(
                f"forget_texts must be CONFIG/SPLIT of a text config ({', '.join(text_configs)}), "
                f"e.g. privleak/forget or scal/forget_2; got {self.forget_texts!r}"
            )
        return config, split
