"""``lm-unlearn demo --benchmark lume``: LUME's unlearning in miniature, on a laptop CPU, offline.

1. fine-tune the packaged SmolLM2-135M-Instruct on the first biographies of LUME's Task2
   (synthetic people with birth dates, phone numbers, SSNs, e-mail and home addresses) in the
   forget file and the first ones in the retain file (the *target*), and the same way on the
   retain biographies only (the *retain model*);
2. unlearn the forget biographies from the target with each method, scoring them every two
   optimiser steps and stopping at the first checkpoint that knows them no better than the
   retain model does (matched forgetting: the methods are compared at equal forgetting);
3. score the retain model, the target and every unlearned model on ``lume_unlearn`` on the same
   rows, with the next retain biographies, never trained on, as the non-members of membership
   inference (the MIA score);
4. write the leaderboard under ``results/lume-demo/``: does forgetting the PII rows keep the
   retain biographies?

Every step calls the function behind a public command (``lm-unlearn finetune / train / score /
leaderboard``) with that command's options; models and scores are reused as ``lm-unlearn demo``
reuses them (:mod:`harness_ext.workflows.demo_steps`). The data is read from ``LUME_DATA_DIR``, else
the official repository's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness_ext.workflows.demo_steps import (
    audit_model,
    cached_model,
    check_trained_weights,
    finish_demo,
    score_as,
    start_demo,
)

DEFAULT_OUTPUT = Path("results") / "lume-demo"
ROWS_PER_BIOGRAPHY = 6  # a Task2 document: one sentence completion and five questions
# Rates that reach the retain model's forgetting in a few evaluations (see docs/lume.md)
METHOD_LR = {"GA+GD": 2e-4, "NPO+GD": 2e-4, "ME+GD": 4e-4, "IDK+AP": 2e-4}
# On the project's 2-core machine with the default settings (nothing else running): from nothing
# (measured), and when the committed scores are reused (models trained only: 10.6 measured with
# 64 new tokens; the five scorings take about 2.5 of the 13.6)
MINUTES_FROM_NOTHING = 13.6
MINUTES_REUSING = 11.0


@dataclass
class LumeDemoSettings:
    """The embedded default: sized to finish in under 20 minutes on 2 CPU cores."""

    model: str | None = None  # default: the packaged SmolLM2-135M-Instruct
    output: Path = DEFAULT_OUTPUT
    cache: Path | None = None  # default: $LM_UNLEARN_CACHE/demo
    subtask: str = "Task2"  # the biographies with personal data: short rows, cheap on a CPU
    forget_biographies: int = 8  # learned by the target, then unlearned
    retain_biographies: int = 8  # learned by both models, scored as retained
    holdout_biographies: int = 8  # the retain file's next ones: never learned, the non-members
    methods: tuple[str, ...] = ("GA+GD", "NPO+GD", "IDK+AP")
    method_lr: dict[str, float] = field(default_factory=lambda: dict(METHOD_LR))
    finetune_epochs: float = 6.0
    finetune_lr: float = 3e-4
    batch_size: int = 8
    unlearn_epochs: float = 5.0  # at most: matched forgetting usually stops a method earlier
    unlearn_lr: float = 1e-4
    score_batch_size: int = 16
    # the longest expected completion of these rows takes 86 of SmolLM2's tokens (a cut below it
    # caps ROUGE-L recall: 64 would cut 14 of the 24); the challenge's budget is 256
    max_new_tokens: int = 96
    match_forgetting: bool = True
    # the rows' knowledge of personal data: ROUGE-L recall of the answers to the 40 questions
    # (exact match moves in steps of 1/40; the 8 completions are too few to match on)
    match_metric: str = "forget_qa_rougeL_recall"
    eval_every: int = 2
    # the audit of every unlearned model (lm-unlearn audit): "relearn" (the first half of the
    # forget biographies relearned, the others scored, the retain model relearned the same way
    # as the control) and "quantize" (8/4-bit weights); none by default, for time
    audit: str | None = None
    relearn_lr: float = 1e-4  # the audit's default (1e-5) barely moves a 135M model in 10 steps

    def learning_rate(self, method: str) -> float:
        return self.method_lr.get(method, self.unlearn_lr)

    def rows(self, biographies: int) -> int:
        return biographies * ROWS_PER_BIOGRAPHY

    def training_rows(self, split: str) -> str:
        """The rows spec of the biographies a model learns: ``lume:forget/Task2[:48]``."""
        count = self.forget_biographies if split == "forget" else self.retain_biographies
        return f"lume:{split}/{self.subtask}[:{self.rows(count)}]"

    def task_options(self) -> dict[str, Any]:
        """``lume_unlearn``'s options: the rows learned, and the holdout after them."""
        retained = self.rows(self.retain_biographies)
        return {"subtasks": [self.subtask], "forget_rows": f"0:{self.rows(self.forget_biographies)}",
                "retain_rows": f"0:{retained}",
                "holdout": f"retain[{retained}:{retained + self.rows(self.holdout_biographies)}]",
                "max_new_tokens": self.max_new_tokens}  # fmt: skip

    def expected_minutes(self) -> tuple[float, float]:
        """(from nothing, reusing the committed scores), scaled roughly by the methods."""
        share = len(self.methods) / len(LumeDemoSettings.__dataclass_fields__["methods"].default)
        return MINUTES_FROM_NOTHING * share, MINUTES_REUSING * share


def scoring(settings: LumeDemoSettings, runs: Path) -> Any:
    from harness_ext.workflows.score_inputs import ScoreSettings

    return ScoreSettings(split="lume", metadata=settings.task_options(), output=runs,
                         batch_size=str(settings.score_batch_size))  # fmt: skip


def matched_forgetting(settings: LumeDemoSettings, retain_run: Path) -> dict[str, Any]:
    """``train`` options that score the forget rows every ``eval_every`` steps and stop at the
    first checkpoint whose ``match_metric`` is the retain model's (same rows) or lower."""
    from harness_ext.workflows.leaderboard_runs import read_runs

    if not settings.match_forgetting:
        return {}
    retain_value = read_runs([retain_run])[0].number(settings.match_metric)
    if retain_value is None:
        raise ValueError(f"the retain model's run {retain_run} has no {settings.match_metric}")
    only_forget = {"sets": ["forget"], "max_new_tokens": settings.max_new_tokens}
    return {"eval_every": settings.eval_every, "eval_metadata": only_forget,
            "select": f"{settings.match_metric}<={retain_value:.4f}", "warmup_steps": 0}  # fmt: skip


def run_lume_demo(settings: LumeDemoSettings | None = None) -> dict[str, Any]:
    """Run the LUME demo (see the module docstring); returns its runs and models."""
    from unlearn_methods.config import FinetuneConfig, UnlearnConfig
    from unlearn_methods.finetune import finetune
    from unlearn_methods.train import train

    settings = settings or LumeDemoSettings()
    start = start_demo(settings)
    cache, runs, clock, base = start.cache, start.runs, start.clock, start.base
    forget_rows, retain_rows = settings.training_rows("forget"), settings.training_rows("retain")
    # rows of similar length batched together (a completion is three times a question's length)
    tuning = FinetuneConfig(
        model=str(base),
        prompt_format="lume",
        num_train_epochs=settings.finetune_epochs,
        learning_rate=settings.finetune_lr,
        per_device_train_batch_size=settings.batch_size,
        effective_batch_size=settings.batch_size,
        train_sampling_strategy="group_by_length",
    )
    clock.step(f"target model: fine-tune on {forget_rows} and {retain_rows}")
    target = cached_model(
        cache, "lume-target", replace(tuning, data=f"{forget_rows},{retain_rows}"), finetune
    )
    clock.step(f"retain model: fine-tune on {retain_rows} only")
    retain = cached_model(cache, "lume-retain", replace(tuning, data=retain_rows), finetune)
    check_trained_weights(runs, target, retain)

    scored_as = scoring(settings, runs)
    clock.step("score the retain model (the reference of forgetting and privacy)")
    retain_run = score_as(retain, scored_as, "retain model")
    clock.step("score the target (before unlearning)")
    target_run = score_as(target, scored_as, "target", retain_reference=retain_run)
    unlearned, scored = {}, [retain_run, target_run]
    for method in settings.methods:
        clock.step(f"unlearn {forget_rows} with {method}, then score it")
        config = UnlearnConfig(
            method=method, model=str(target), forget=forget_rows, retain=retain_rows,
            prompt_format="lume", num_train_epochs=settings.unlearn_epochs,
            learning_rate=settings.learning_rate(method),
            per_device_train_batch_size=settings.batch_size,
            effective_batch_size=settings.batch_size,
            **matched_forgetting(settings, retain_run),
        )  # fmt: skip
        model = cached_model(cache, "lume-unlearn-" + method.replace("+", "_"), config, train)
        unlearned[method] = model
        scored.append(score_as(model, scored_as, retain_reference=retain_run))
    for method, model in unlearned.items() if settings.audit else ():
        clock.step(f"audit the {method} model: {settings.audit}")
        labelled, command = replace(scored_as, label=method), "lm-unlearn demo --benchmark lume"
        audit_model(model, labelled, settings, target_run, retain, command)

    title = f"lm-unlearn demo: {base.name} unlearns LUME's {settings.subtask} biographies"
    minutes = finish_demo(start, settings.output, scored, title)
    print(f"demo finished in {minutes:.1f} min; open {Path(settings.output) / 'leaderboard.html'}")
    return {"retain_run": retain_run, "target_run": target_run, "models": unlearned,
            "minutes": minutes}  # fmt: skip
