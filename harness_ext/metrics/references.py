"""References: what another model (or the same model before unlearning) said on the same rows.

Two metrics compare a run with a reference:

* forget quality needs the *retain model's* forget-set truth ratios;
* cosine similarity and entailment on Real Authors / World Facts compare with the *pre-unlearning*
  model's own generations.

Both read the same rows: this module defines them (:class:`ScoredReference`); a benchmark reads
them from its files (TOFU's: ``tofu_tasks/reference_files.py``). Rows are matched by (set, row)
with the question checked, so a reference scored on other rows is an error, never a silently
wrong number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.metrics.eval_set import FORGET_SET

REFERENCE_FORMAT = "lm-unlearn-reference/1"


class ReferenceError(ValueError):
    """A reference file cannot be used."""


@dataclass(frozen=True)
class ReferenceRow:
    set_name: str
    question: str
    generation: str | None
    raw_truth_ratio: float | None
    row: int | None = None  # the row in the set's source file (None in old reference files)
    answer_nll: float | None = None  # mean NLL of the ground-truth answer (membership inference)
    # per membership-inference attack ("loss", "min_k", ...): this row's score
    mia_scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredReference:
    source: str
    kind: str  # "reference-file" | "lm-eval-samples" | "legacy-log"
    prompt_format: str | None
    rows: tuple[ReferenceRow, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def forget_ratios(self) -> list[tuple[int | None, str, float]]:
        """(row, question, raw truth ratio R) of the forget set: the retain-model reference of
        forget quality."""
        return [
            (r.row, r.question, r.raw_truth_ratio)
            for r in self.rows
            if r.set_name == FORGET_SET and r.raw_truth_ratio is not None
        ]

    def generations(self, set_name: str) -> list[tuple[int | None, str, str]]:
        """(row, question, generation) of one set: the pre-unlearning outputs."""
        return [
            (r.row, r.question, r.generation)
            for r in self.rows
            if r.set_name == set_name and r.generation is not None
        ]

    @property
    def answer_nlls(self) -> dict[tuple[str, int], tuple[str, float]]:
        """(set, row) → (question, mean answer NLL) of the rows that carry one."""
        return {
            (r.set_name, r.row): (r.question, r.answer_nll)
            for r in self.rows
            if r.row is not None and r.answer_nll is not None
        }

    def mia_auc(self, attack: str) -> float | str | None:
        """The reference run's AUC of one membership-inference attack: a number, a
        not-computed reason, or None when it was scored without membership inference."""
        mia = self.provenance.get("mia") or {}
        return mia.get(f"mia_{attack}_auc")

    @property
    def scored_tokens(self) -> str | None:
        """Which answer tokens the reference's log-likelihoods cover (None: not recorded)."""
        value = self.provenance.get("scored_tokens")
        return value.get("name") if isinstance(value, dict) else value

    @property
    def prompt_template(self) -> dict[str, str] | None:
        return self.provenance.get("prompt_template")

    @property
    def identity(self) -> str:
        """What the reference is, wherever it lives: the settings hash of the scoring run it
        came from, else a hash of its rows."""
        run = self.provenance.get("scoring_run") or {}
        if run.get("settings_sha256"):
            return f"run:{run['settings_sha256']}"
        digest = hashlib.sha256()
        for row in self.rows:
            line = [row.set_name, row.question, row.generation, row.raw_truth_ratio]
            digest.update(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
        return f"rows:{digest.hexdigest()}"

    @property
    def name(self) -> str:
        """A short name for tables: the scoring run's name, else the file's."""
        run = self.provenance.get("scoring_run") or {}
        return str(run.get("name") or Path(self.source).name)

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.set_name] = counts.get(row.set_name, 0) + 1
        return {
            "source": self.source,
            "name": self.name,
            "identity": self.identity,
            "kind": self.kind,
            "prompt_format": self.prompt_format,
            "scored_tokens": self.scored_tokens,
            "rows": counts,
            **({"model": self.provenance["model"]} if "model" in self.provenance else {}),
        }
