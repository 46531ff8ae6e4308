"""The task options every benchmark's task takes: how it prompts, generates and scores, and the
references it compares with. A benchmark's own options (its data, its rows) extend
:class:`ScoringOptions`; the task parses them once, from the task metadata (``--metadata``), into
one frozen object that the rest of the run reads.

The table of every option is in docs/scoring.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from harness_ext.lm_eval_plugin.requests import TaskSetupError
from harness_ext.lm_eval_plugin.scored_tokens import SCORED_TOKENS

TOKEN_SCORES = ("auto", "requests", "off")
SWITCHES = ("bertscore", "truth_ratio")


@dataclass(frozen=True)
class ScoringOptions:
    max_rows_per_set: int | dict[str, int] | None = None  # at most N rows of each set
    data_dir: str | None = None  # the benchmark's local data folder
    sets: list[str] | str | None = None  # score only these sets (default: all of them)
    holdout: str | bool | None = None  # the non-members of membership inference
    prompt_format: str | None = None
    prompt_template: dict[str, str] | str | None = None
    retain_reference: str | None = None
    pre_unlearning_reference: str | None = None
    embedding_model: str | None = None
    nli_model: str | None = None
    aux_device: str | None = None
    bertscore: bool = False
    bertscore_model: str | None = None
    generation_max_length: int = 200  # prompt + generation tokens
    scored_tokens: str = "tofu"
    truth_ratio: bool | str = True  # false: no paraphrased / perturbed answers (quick runs)
    token_scores: str = "auto"  # per-token numbers: the backend's, or "requests", or "off"

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ScoringOptions:
        """The options in a task's metadata (other keys are the model's arguments), checked."""
        names = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in metadata.items() if k in names and v is not None})
        options.check()
        return options

    def check(self) -> None:
        """Refuse values the run could not use; a benchmark adds its own checks."""
        if int(self.generation_max_length) <= 0:
            raise TaskSetupError("generation_max_length must be a positive number of tokens")
        for switch in SWITCHES:
            if str(getattr(self, switch)).lower() not in ("true", "false", "1", "0"):
                raise TaskSetupError(
                    f"{switch} must be true or false, got {getattr(self, switch)!r}"
                )
        if self.token_scores not in TOKEN_SCORES:
            raise TaskSetupError(
                f"token_scores must be one of {', '.join(TOKEN_SCORES)}, got {self.token_scores!r}"
            )
        if self.scored_tokens not in SCORED_TOKENS:
            raise TaskSetupError(
                f"scored_tokens must be one of {', '.join(SCORED_TOKENS)}, got "
                f"{self.scored_tokens!r}"
            )

    def refuse_given(self, names: tuple[str, ...], refusal: str, because: str) -> None:
        """Refuse the shared options among ``names`` given a value other than their default:
        "``refusal`` <them>: ``because``" (``refusal``: "the X task does not take")."""
        defaults = {f.name: f.default for f in fields(ScoringOptions)}
        given = [name for name in names if getattr(self, name) != defaults[name]]
        if given:
            raise TaskSetupError(f"{refusal} {', '.join(given)}: {because}")

    @property
    def wants_bertscore(self) -> bool:
        return str(self.bertscore).lower() in ("true", "1")

    @property
    def wants_truth_ratio(self) -> bool:
        return str(self.truth_ratio).lower() in ("true", "1")
