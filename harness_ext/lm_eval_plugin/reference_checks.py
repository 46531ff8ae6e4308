"""Whether a reference (the retain model's run, the model's outputs before unlearning) can be
compared with this run: the same prompt, the same scored tokens. A task refuses to start
otherwise, with what to do about it."""

from __future__ import annotations

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.metrics.references import ScoredReference
from harness_ext.prompts import PromptFormat


def check_prompt_format(reference: ScoredReference, fmt: PromptFormat) -> None:
    """The reference was asked in this run's prompt format (and template, if any)."""
    if not reference.prompt_format:
        raise TaskSetupError(
            f"cannot tell which prompt format the reference {reference.source} was scored "
            f"with; pass its results file (the samples file's results_*.json beside it), its "
            f"run folder, or an lm-unlearn reference file"
        )
    if reference.prompt_format != fmt.name:
        raise TaskSetupError(
            f"the reference {reference.source} was scored with prompt format "
            f"{reference.prompt_format!r} but this run uses {fmt.name!r}; "
            f"score both with the same format"
        )
    mine = {"prompt": fmt.prompt, "answer": fmt.answer}
    if fmt.name == "template" and reference.prompt_template not in (None, mine):
        raise TaskSetupError(
            f"the reference {reference.source} was scored with another prompt_template "
            f"({reference.prompt_template}); score both with the same strings"
        )


def check_scored_tokens(reference: ScoredReference, scored_tokens: str) -> None:
    """Truth ratios of a reference are comparable only under the same token definition."""
    theirs = reference.scored_tokens
    if theirs is not None and theirs != scored_tokens:
        raise TaskSetupError(
            f"the reference {reference.source} scored answers as {theirs!r} but this run "
            f"scores them as {scored_tokens!r} (scored_tokens); its truth ratios are not "
            f"comparable. Score the reference again with this version, or pass "
            f'--metadata \'{{"scored_tokens": "{theirs}"}}\''
        )
