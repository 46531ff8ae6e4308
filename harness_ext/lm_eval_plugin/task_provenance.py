"""What a run of a task records about itself, as one typed record.

A task fills its :class:`TaskProvenance` while it runs (the documents it scored, the prompt
format it chose, the tokens it scored, the metric models it loaded, ...) and the record goes into
lm-eval's results once, when lm-eval writes the task's config (``dump_config``), under
``configs.<task>.metadata.tofu`` (the key every run has used). Everything that reads a run —
scoring manifests, the leaderboard, references — reads the record back through
:func:`read_provenance`, so its shape is declared here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

PROVENANCE_KEY = "tofu"


@dataclass
class TaskProvenance:
    """A run's provenance. The first fields are known when the task is built; the others are
    set as the run reaches them and stay None (left out of the results) when it never does."""

    scenario: str | None = None  # set by a task whose scenario is not TOFU's fictitious one
    options: dict[str, Any] = field(default_factory=dict)  # the task options, as parsed
    data_source: str | dict[str, str] | None = None
    data_sha256: str | None = None  # of the scored documents
    rows_per_set: dict[str, int] = field(default_factory=dict)
    prompt_format: str | None = None
    generation: dict[str, Any] = field(default_factory=lambda: {"do_sample": False, "until": "eos"})
    metric_variants: dict[str, str] = field(default_factory=dict)
    metric_models: dict[str, Any] | None = None
    forget_quality_reference: dict[str, Any] | None = None
    pre_unlearning_reference: dict[str, Any] | None = None
    holdout: dict[str, Any] | None = None
    # set as the run goes
    prompt_format_reason: str | None = None
    prompt_template: dict[str, str] | None = None
    scored_tokens: dict[str, Any] | str | None = None
    token_scores: dict[str, Any] | None = None
    metric_ideals: dict[str, Any] | None = None
    retain_values: dict[str, float] | None = None

    ALWAYS_WRITTEN = (
        "options", "data_source", "data_sha256", "rows_per_set", "prompt_format", "generation",
        "metric_variants", "metric_models", "forget_quality_reference",
        "pre_unlearning_reference", "holdout",
    )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The record as the results hold it."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in self.ALWAYS_WRITTEN or getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TaskProvenance:
        """A record read from results; keys written by other versions are ignored, missing ones
        keep their defaults (results written before a key existed)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def read_provenance(
    results: dict[str, Any] | None, task: str | None = None
) -> TaskProvenance | None:
    """The record a run of ``task`` (default: the first task that has one) wrote into lm-eval's
    results; None for a task of another harness."""
    configs = (results or {}).get("configs") or {}
    names = [task] if task else list(configs)
    for name in names:
        record = ((configs.get(name) or {}).get("metadata") or {}).get(PROVENANCE_KEY)
        if isinstance(record, dict):
            return TaskProvenance.from_dict(record)
    return None


def write_provenance(metadata: dict[str, Any], record: TaskProvenance) -> None:
    """Put the record into a task's metadata (once, as lm-eval writes the task's config)."""
    metadata[PROVENANCE_KEY] = record.to_dict()
