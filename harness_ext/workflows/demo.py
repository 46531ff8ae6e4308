"""``lm-unlearn demo``: the paper's experiment in miniature, on a laptop CPU, offline.

1. fine-tune the packaged SmolLM2-135M-Instruct on the forget01 authors plus some retain rows (the
   *target*), and the same way on the retain rows only (the *retain model*);
2. unlearn forget01 from the target with ME+GD, IDK+AP and GA+GD, each scored on the
   forget set every two optimiser steps and stopped at the first checkpoint that forgets as much
   as the retain model knows (its forget ROUGE-L): the methods are compared at matched forgetting;
3. score the retain model, the target and every unlearned model on ``tofu_forget01_unlearn``;
4. audit every unlearned model (``lm-unlearn audit``: relearning half of each forget author's
   rows, with the retain model relearned the same way as the control; 8/4-bit weights and
   paraphrased questions with ``--audit relearn,quantize,paraphrase``);
5. write the leaderboard under ``results/demo/``.

Every step calls the function behind a public command (``lm-unlearn finetune / train / score /
audit / leaderboard``) with that command's options. Models are cached by content: a step whose
inputs (its options and the input model's weights) are unchanged is reused, and scoring skips
runs already made with identical settings, so a second ``make demo`` only rebuilds the
leaderboard.
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

TASK = "tofu_forget01_unlearn"
DEFAULT_OUTPUT = Path("results") / "demo"
HOLDOUT_ROWS = range(360, 400)  # retain_perturbed rows beyond any the demo fine-tunes on
# Per-method rates that reach the retain model's forgetting in a few evaluations. ME+GD's loss is
# bounded (it moves the forget set slowly: at 3e-4 with 20 retain rows it needed 14 steps, at
# 4e-4 it needs 6-8). IDK+AP's refusals come in a rush: at 1e-4 its forget
# ROUGE-L falls from 0.42 to 0.19 between two evaluations, and it refuses on Real Authors too.
# GA+GD at 1e-4 needs 11-14 steps; at 3e-4 GA+GD and NPO+GD overshoot in one or two steps,
# taking the retain set and Real Authors down with it.
METHOD_LR = {"ME+GD": 4e-4, "GA+GD": 2e-4, "NPO+GD": 2e-4, "IDK+AP": 5e-5}
# Measured on the project's 2-core machine with the default settings (make demo, nothing else
# running): from nothing, and when the committed scores are reused (models trained only).
MINUTES_FROM_NOTHING = 19.4
MINUTES_REUSING = 9.5


@dataclass
class DemoSettings:
    """The embedded default: sized to finish in under 20 minutes on 2 CPU cores."""

    model: str | None = None  # default: the packaged SmolLM2-135M-Instruct
    output: Path = DEFAULT_OUTPUT
    cache: Path | None = None  # default: $LM_UNLEARN_CACHE/demo
    # the paper's two methods and the classic baseline; NPO+GD is a --methods away (each method
    # adds about 4 minutes: its unlearning run, its scoring and its audit)
    methods: tuple[str, ...] = ("ME+GD", "IDK+AP", "GA+GD")
    # 20 retain, Real Authors and World Facts rows (forget01 has 40): the run from nothing fits in
    # 20 minutes on 2 cores (with 40 each it took 53, with every attack of the audit)
    retain_rows: int = 20  # retain rows the models learn, and the retain rows scored
    utility_rows: int = 20  # Real Authors and World Facts rows scored
    forget_rows: int | None = None  # forget rows scored (default: all 40 of forget01)
    prompt_format: str = "plain"
    finetune_epochs: float = 5.0
    finetune_lr: float = 2e-4
    unlearn_epochs: float = 4.0  # at most: matched forgetting usually stops a method earlier
    unlearn_lr: float = 1e-4
    method_lr: dict[str, float] = field(default_factory=lambda: dict(METHOD_LR))
    batch_size: int = 8  # fine-tuning
    unlearn_batch_size: int = 4  # half the cost of a step of 8, about as much forgetting per step
    score_batch_size: int = 16
    match_forgetting: bool = True  # stop each method at the retain model's forget ROUGE-L
    eval_every: int = 2  # optimiser steps between evaluations: each costs about two steps
    eval_rows: int | None = 12  # forget rows scored at every evaluation (None: all)
    # prompt + generation tokens (TOFU: 200). forget01's longest question and answer take 100:
    # only an unlearned model's rambling is cut, which is most of its scoring time
    generation_max_length: int = 128
    metadata: dict[str, Any] = field(default_factory=dict)  # more task options
    # relearning, with the retain model as its control: the attack that asks whether the
    # knowledge is gone; 8/4-bit weights and paraphrased questions are a --audit away
    audit: str | None = "relearn"
    relearn_lr: float = 1e-4  # the audit's default (1e-5) barely moves a 135M model in 10 steps

    def learning_rate(self, method: str) -> float:
        return self.method_lr.get(method, self.unlearn_lr)

    def expected_minutes(self) -> tuple[float, float]:
        """(from nothing, reusing the committed scores) on 2 CPU cores, as measured for the
        default settings; scaled roughly by the methods and the audit for others."""
        share = len(self.methods) / len(DemoSettings.__dataclass_fields__["methods"].default)
        audit = 1.0 if self.audit else 0.45
        return MINUTES_FROM_NOTHING * share * audit, MINUTES_REUSING * share


def score(
    model: Path, settings: DemoSettings, runs: Path, label: str = "", **references: str
) -> Path:
    """Score a model as ``lm-unlearn score`` does; returns its run folder (made, or made
    before with these exact settings)."""
    from harness_ext.workflows.score_inputs import ScoreSettings

    scoring = ScoreSettings(
        prompt_format=settings.prompt_format,
        metadata=demo_task_options(settings),
        batch_size=str(settings.score_batch_size),
        output=runs,
    )
    return score_as(model, scoring, label, **references)


def demo_task_options(settings: DemoSettings) -> dict[str, Any]:
    limits = {"retain": settings.retain_rows, "real_authors": settings.utility_rows,
              "world_facts": settings.utility_rows}  # fmt: skip
    if settings.forget_rows:
        limits["forget"] = settings.forget_rows
    # membership inference: retain rows no demo model was fine-tuned on are the non-members
    holdout = f"retain_perturbed[{HOLDOUT_ROWS.start}:{HOLDOUT_ROWS.stop}]"
    return {"max_rows_per_set": limits, "holdout": holdout,
            "generation_max_length": settings.generation_max_length, **settings.metadata}  # fmt: skip


def audit(
    model: Path,
    settings: DemoSettings,
    runs: Path,
    target_run: Path,
    retain_run: Path,
    method: str,
    retain_model: Path,
) -> None:
    """``lm-unlearn audit`` of one unlearned model against the target's scoring run, with the
    retain model as the control of relearning."""
    from harness_ext.workflows.score_inputs import ScoreSettings

    scoring = ScoreSettings(
        prompt_format=settings.prompt_format,
        metadata=demo_task_options(settings),
        label=method,
        retain_reference=str(retain_run),
        pre_unlearning_reference=str(target_run),
        batch_size=str(settings.score_batch_size),
        output=runs,
    )
    audit_model(model, scoring, settings, target_run, retain_model, "lm-unlearn demo")


def matched_forgetting(settings: DemoSettings, retain_run: Path) -> dict[str, Any]:
    """``train`` options that score the forget set every ``eval_every`` steps and stop at the
    first checkpoint whose forget ROUGE-L is the retain model's (on the same rows) or lower."""
    if not settings.match_forgetting:
        return {}
    # ROUGE-L needs the generations only: no other set, no perturbed answers (a third the
    # time), and generations cut at 128 tokens with the prompt (forget01's longest question and
    # answer take 100), so that an unlearned model's rambling does not set the pace
    only_forget = {"sets": ["forget"], "truth_ratio": False,
                   "generation_max_length": settings.generation_max_length,
                   **settings.metadata}  # fmt: skip
    # no warm-up: with it the first steps barely move the model and their evaluations are wasted
    return {"eval_every": settings.eval_every, "eval_rows": settings.eval_rows,
            "eval_metadata": only_forget, "select_matching_reference": str(retain_run),
            "warmup_steps": 0}  # fmt: skip


def forget_quality_of_itself(run: Path) -> float:
    """KS p-value of a run's forget truth ratios against themselves: the ceiling, 1.0."""
    from harness_ext.metrics.tofu import forget_quality
    from tofu_tasks.reference_files import load_reference

    ratios = [ratio for _, _, ratio in load_reference(run).forget_ratios]
    return forget_quality(ratios, ratios)


def run_demo(settings: DemoSettings | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns its runs and models."""
    from unlearn_methods.config import FinetuneConfig, UnlearnConfig
    from unlearn_methods.finetune import finetune
    from unlearn_methods.train import train

    settings = settings or DemoSettings()
    start = start_demo(settings)
    cache, runs, clock, base = start.cache, start.runs, start.clock, start.base

    retain_data = f"retain_perturbed[:{settings.retain_rows}]"
    if settings.retain_rows > HOLDOUT_ROWS.start:
        raise ValueError(f"retain_rows must stay below {HOLDOUT_ROWS.start} (the holdout rows)")
    # rows of similar length batched together: random batches of 8 pad these rows by 31%
    tuning = FinetuneConfig(
        model=str(base),
        prompt_format=settings.prompt_format,
        num_train_epochs=settings.finetune_epochs,
        learning_rate=settings.finetune_lr,
        per_device_train_batch_size=settings.batch_size,
        effective_batch_size=settings.batch_size,
        train_sampling_strategy="group_by_length",
    )
    clock.step(
        f"target model: fine-tune on forget01 (40 rows) + {settings.retain_rows} retain rows"
    )
    target_config = replace(tuning, data=f"forget01,{retain_data}")
    target = cached_model(cache, "target", target_config, finetune)
    clock.step(f"retain model: fine-tune on the {settings.retain_rows} retain rows only")
    retain = cached_model(cache, "retain", replace(tuning, data=retain_data), finetune)

    check_trained_weights(runs, target, retain)
    clock.step("score the retain model (the forget-quality reference)")
    retain_run = score(retain, settings, runs, label="retain model")
    clock.step("score the target (before unlearning)")
    target_run = score(target, settings, runs, label="target", retain_reference=retain_run)
    unlearned = {}
    scored = [retain_run, target_run]
    for method in settings.methods:
        clock.step(f"unlearn forget01 with {method}, then score it")
        config = UnlearnConfig(
            method=method, model=str(target), forget="forget01", retain=retain_data,
            prompt_format=settings.prompt_format, num_train_epochs=settings.unlearn_epochs,
            learning_rate=settings.learning_rate(method),
            per_device_train_batch_size=settings.unlearn_batch_size,
            effective_batch_size=settings.unlearn_batch_size,
            **matched_forgetting(settings, retain_run),
        )  # fmt: skip
        model = cached_model(cache, "unlearn-" + method.replace("+", "_"), config, train)
        unlearned[method] = model
        scored.append(
            score(
                model,
                settings,
                runs,
                retain_reference=retain_run,
                pre_unlearning_reference=target_run,
            )
        )

    for method, model in unlearned.items() if settings.audit else ():
        clock.step(f"audit the {method} model: {settings.audit}")
        audit(model, settings, runs, target_run, retain_run, method, retain)

    title = f"lm-unlearn demo: {base.name} unlearns forget01"
    minutes = finish_demo(start, settings.output, scored, title)
    itself = forget_quality_of_itself(retain_run)
    print(f"\nforget quality of the retain model against itself: {itself:.4f} (the ceiling)")
    print(f"demo finished in {minutes:.1f} min; open {Path(settings.output) / 'leaderboard.html'}")
    return {
        "retain_run": retain_run,
        "target_run": target_run,
        "models": unlearned,
        "minutes": minutes,
    }
