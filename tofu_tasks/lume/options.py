"""The options of the LUME task (``--metadata``): the shared ones that apply plus LUME's own.

- ``data_dir``: a folder holding ``forget.jsonl`` and ``retain.jsonl`` (else ``LUME_DATA_DIR``,
  else the official repository's files, downloaded once);
- ``subtasks`` / ``kinds``: the subtasks (``Task1``-``Task3``) and kinds (``sc``, ``qa``) scored
  (default all);
- ``sets`` / ``max_rows_per_set``: the sets (``forget``, ``retain``, ``holdout``) and the rows of
  each, the cap applied per subtask and kind (a quick run keeps every one);
- ``forget_rows`` / ``retain_rows``: ``"start:stop"`` (or several, separated by commas): score
  only these rows of the forget / retain file;
- ``holdout``: ``retain[start:stop]``, rows of the retain file the model was never trained on:
  the non-members of membership inference (the MIA score), left out of the retain set (default
  none: the official models were trained on every row, and the MIA score reads "N/A");
- ``mmlu``: the model's MMLU accuracy for the final score: a number, or a results file or run
  folder of lm-eval's ``mmlu`` or of this project's ``wmdp_unlearn`` (its ``mmlu_acc``);
- ``max_new_tokens``: the generation budget (default 256, the challenge's);
- ``retain_reference``: the retain model's run of this task (the shared membership attacks'
  reference, privleak).

Row numbers count the rows of the chosen ``subtasks`` in file order (all subtasks: the file's
rows), as training data names them: ``lume:retain/Task2[:48]`` trains on the rows that
``{"subtasks": ["Task2"], "retain_rows": "0:48"}`` scores.

Prompt formats and output-quality models do not apply: each input is given to the model as it
is, as the challenge's evaluation does.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.task_options import ScoringOptions
from harness_ext.row_slices import (
    RowSliceError,
    parse_slice,
    row_numbers,
    slice_range,
    split_named_slice,
)
from tofu_tasks.data import set_names
from tofu_tasks.lume.data import SUBTASKS

LUME_SETS = ("forget", "retain", "holdout")
KINDS = ("sc", "qa")
DEFAULT_NEW_TOKENS = 256  # the challenge's generation budget
PROMPT_FORMAT = "lume"  # each input as it is, no template
NOT_APPLICABLE = (
    "prompt_format", "prompt_template", "pre_unlearning_reference", "embedding_model",
    "nli_model", "bertscore_model", "scored_tokens", "bertscore", "truth_ratio",
)  # fmt: skip


@dataclass(frozen=True)
class LumeOptions(ScoringOptions):
    subtasks: list[str] | str | None = None
    kinds: list[str] | str | None = None
    mmlu: float | str | None = None
    max_new_tokens: int = DEFAULT_NEW_TOKENS
    forget_rows: str | None = None
    retain_rows: str | None = None

    def check(self) -> None:
        super().check()
        self.refuse_given(
            NOT_APPLICABLE, "the LUME task does not take", "it gives each input to the model as it is and "
            "scores the output as the challenge does",
        )  # fmt: skip
        for name, value, known in (("subtasks", self.subtask_list(), SUBTASKS),
                                   ("kinds", self.kind_list(), KINDS),
                                   ("sets", set_names(self.sets or []), LUME_SETS)):  # fmt: skip
            wrong = [v for v in value if v not in known]
            if wrong or (name != "sets" and not value):
                raise TaskSetupError(f"{name} must name some of {', '.join(known)}, got {value!r}")
        if isinstance(self.max_new_tokens, bool) or int(self.max_new_tokens) < 1:
            raise TaskSetupError(f"max_new_tokens must be 1 or more, got {self.max_new_tokens!r}")
        if self.holdout not in (None, False):
            self.holdout_rows(10**9)  # the form; the bounds are checked against the file
        for split in ("forget", "retain"):  # the form; the bounds are checked against the file
            text = getattr(self, f"{split}_rows")
            try:
                for part in str(text).split(",") if text is not None else ():
                    parse_slice(part)
            except RowSliceError as err:
                raise TaskSetupError(self._rows_error(split, err)) from err

    def subtask_list(self) -> list[str]:
        return set_names(self.subtasks) if self.subtasks is not None else list(SUBTASKS)

    def kind_list(self) -> list[str]:
        return set_names(self.kinds) if self.kinds is not None else list(KINDS)

    def holdout_rows(self, available: int) -> range | None:
        """The retain rows of the holdout (None without one)."""
        if self.holdout in (None, False):
            return None
        try:
            name, rows = split_named_slice(str(self.holdout))
            if name != "retain" or rows is None:
                raise RowSliceError("not retain[start:stop]")
            return slice_range(rows, available)
        except RowSliceError as err:
            raise TaskSetupError(
                f"holdout must be retain[start:stop], rows of the retain file the model was "
                f"never trained on (e.g. retain[2400:]); got {self.holdout!r} ({err})"
            ) from err

    def scored_rows(self, split: str, available: int) -> set[int] | None:
        """The rows of ``forget_rows`` / ``retain_rows`` (None: every row); retain rows may not
        be holdout rows."""
        text = getattr(self, f"{split}_rows")
        if text is None:
            return None
        try:
            rows = set(row_numbers(str(text), available))
        except RowSliceError as err:
            raise TaskSetupError(self._rows_error(split, err)) from err
        holdout = self.holdout_rows(available) if split == "retain" else None
        if holdout is not None and rows & set(holdout):
            raise TaskSetupError(
                f"retain_rows {text!r} and holdout {self.holdout!r} share rows: a holdout row "
                f"is one the model never saw, so it cannot be scored as retained"
            )
        return rows

    @staticmethod
    def _rows_error(split: str, err: Exception) -> str:
        return (f"{split}_rows must be 'start:stop' (e.g. '0:48') or several separated by commas, "
                f"rows of the {split} file (of the chosen subtasks): {err}")  # fmt: skip
