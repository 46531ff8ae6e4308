"""``lm-unlearn audit``: does the forgetting hold?

An unlearned model may only hide what it was asked to forget. The audit attacks it three ways and
scores each attacked version like any other model, on the same rows as the model before the attack:

``relearn``     fine-tune on one part of the forget set for a few steps (default 10, lr 1e-5,
                constant rate, batch 4, full weights or ``--relearn-lora``), then score the
                *other* part: does learning some facts bring back the rest? ``same-authors``
                (default) trains on the first half of each author's rows and scores the second
                half; ``other-authors`` trains on the first half of the authors and scores the
                others; ``--relearn-rows`` picks the trained slice by hand. With ``--control``
                (the retain model, which never learned the forget rows) the same relearning
                runs on it too: relearning can teach facts a model never knew, so what it
                brings back counts only beyond what it gives the control.
``quantize``    the weights in 8 bits (LLM.int8) and in 4 bits (NF4), with bitsandbytes on CPU and
                on CUDA alike: does rounding the weights undo the small updates of unlearning?
``paraphrase``  the forget questions as TOFU rephrased them (task option
                ``forget_question: "paraphrased"``): does forgetting survive other wording?

On a MUSE corpus (``--forget muse-news``) ``relearn`` trains on forget documents (default the first
half of ``raw/forget``, as text chunks) and the verbatim and knowledge forget sets are scored whole;
``paraphrase`` does not apply (MUSE has no rephrased questions). On WMDP (``--forget wmdp``)
``relearn`` trains on the forget corpora of the audited domains (bio, cyber) and scores every
question of the domains, and ``fewshot`` asks each question after k examples of its domain
(``--fewshot-examples``, default 5) against zero-shot before.

Every score is a normal ``lm-unlearn score`` run (manifest, settings hash, skipped when already
made) in the runs folder a leaderboard reads; an attacked run's manifest says the attack, its
settings and the input model's fingerprint. Attacked models are built once and kept, named by the
hash of the input model and the attack's settings. The audit writes one table (``audit.md``,
``audit.csv``, ``audit.json``; printed too): each forget metric before and after each attack, and,
with ``--target`` (the model before unlearning, or its scoring run), the recovery
(after − before) / (target − before), N/A where target − before is within its noise (twice the
standard deviation of that gap over bootstrap draws of the scored rows).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from harness_ext.workflows.audit_attacks import attacked_model, plan, relearn_data_folders
from harness_ext.workflows.audit_report import write_report
from harness_ext.workflows.audit_scores import (
    forget_samples,
    input_model,
    portable_attack,
    results_file_of,
    rows_scored,
    score,
    score_after,
    score_before,
    score_target,
    scores_from_run,
    task_aggregations,
    usual_run,
)
from harness_ext.workflows.audit_settings import (
    KNOWLEDGE_ATTACKS,
    AttackResult,
    AuditError,
    AuditReport,
    AuditSettings,
    Control,
    Scores,
    Variant,
    check_settings,
    target_is_run,
)
from harness_ext.workflows.score_inputs import ModelSpec, ScoreError, resolve_model
from harness_ext.workflows.score_runs import eval_data_sha256


# ---------------------------------------------------------------------- the audit
def run_audit(settings: AuditSettings) -> AuditReport:
    """Attack the model, score each attacked version, write and return the table."""
    started = time.time()
    check_settings(settings)
    spec = _input_spec(settings)
    variants = plan(settings)
    _check_plan(settings, variants)
    results = []
    with _quiet_bitsandbytes():
        for variant in variants:
            print(f"\n== audit: {variant.name} ==", flush=True)
            results.append(run_attack(settings, spec, variant))
    return write_report(settings, spec, results, time.time() - started)


def _input_spec(settings: AuditSettings) -> ModelSpec:
    spec = resolve_model(settings.model, settings.base)
    if settings.scoring.label:
        spec.name = settings.scoring.label
    if "relearn" in settings.attacks and settings.relearn.lora and spec.peft:
        raise AuditError(
            "--relearn-lora on an adapter: give the merged model, or relearn all weights"
        )
    if settings.target and not target_is_run(settings.target):
        try:  # a missing target fails here, before any work
            resolve_model(settings.target)
        except ScoreError as err:
            raise AuditError(f"--target: {err}") from err
    if settings.control:
        if target_is_run(settings.control):
            raise AuditError("--control takes a model (the retain model), not a scoring run")
        try:
            resolve_model(settings.control)
        except ScoreError as err:
            raise AuditError(f"--control: {err}") from err
    return spec


def _check_plan(settings: AuditSettings, variants: list[Variant]) -> None:
    """The data and task options of every run, checked before any model is touched."""
    from tofu_tasks.data import TofuDataError
    from tofu_tasks.lume.data import LumeDataError
    from tofu_tasks.muse.data import MuseDataError
    from tofu_tasks.wmdp.data import WmdpDataError

    for variant in variants:
        for metadata in (variant.metadata, variant.before_metadata):
            try:
                eval_data_sha256(replace(settings.scoring, metadata=metadata))
            except (TofuDataError, MuseDataError, WmdpDataError, LumeDataError, ScoreError) as err:
                raise AuditError(f"{variant.name}: {err}") from err
        if variant.attack == "relearn" and settings.scoring.benchmark.kind != "tofu":
            _check_relearn_text(settings, variant)
    if settings.target and target_is_run(settings.target):
        task, results_file = settings.scoring.task, results_file_of(Path(settings.target))
        results = json.loads(results_file.read_text(encoding="utf-8"))
        if task not in results.get("results", {}):
            raise AuditError(f"--target {settings.target}: its results have no {task} scores")
        forget_samples(results_file, settings)  # its per-row numbers are there


def _check_relearn_text(settings: AuditSettings, variant: Variant) -> None:
    """The forget text (or LUME's rows) relearning reads exists and gives training examples."""
    from unlearn_methods.data import UnlearnDataError, read_rows

    for part in variant.settings["trained_on"].split(","):
        try:
            rows = read_rows(part, **relearn_data_folders(settings.scoring))
        except UnlearnDataError as err:
            raise AuditError(f"relearn: {err}") from err
        if not rows:
            raise AuditError(f"relearn: {part} holds no text to relearn")


@contextmanager
def _quiet_bitsandbytes() -> Iterator[None]:
    """bitsandbytes logs a warning at every 8-bit matrix product on float32 inputs."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_attack(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> AttackResult:
    started = time.time()
    before = score_before(settings, spec, variant)
    target = score_target(settings, variant)
    noise = gap_noise(settings, before, target) if target else {}
    control = run_control(settings, variant) if variant.attack in KNOWLEDGE_ATTACKS else None
    model = attacked_model(settings, spec, variant)
    after = score_after(settings, spec, variant, model, before, target, noise, control)
    seconds = round(time.time() - started, 1)
    return AttackResult(variant, before, after, target, model, seconds, control, noise)


def gap_noise(settings: AuditSettings, before: Scores, target: Scores) -> dict[str, float]:
    """Per forget metric: the noise of target − before over the rows both scored."""
    from harness_ext.metrics import noise

    wanted = set(before.metrics) & set(target.metrics)
    aggregations = task_aggregations(wanted.__contains__, settings.scoring)
    return noise.gap_noise(before.rows, target.rows, aggregations)


def run_control(settings: AuditSettings, variant: Variant) -> Control | None:
    """The same attack on the control (the retain model), scored on the same rows."""
    if not settings.control:
        return None
    spec = resolve_model(settings.control)
    if settings.control_label:
        spec.name = settings.control_label
    rows = rows_scored(variant.before_metadata, settings)
    made = usual_run(settings, settings.control, as_target=True)
    before = made and scores_from_run(made, settings, variant.before_metadata)
    if not before:
        before = score(
            settings.control, settings, variant.before_metadata,
            attack={"name": "none", "role": "control"},
            labels=(f"{spec.name} ({rows})", spec.base_name), is_target=True,
        )  # fmt: skip
    model = attacked_model(settings, spec, variant)
    attack = {"name": variant.attack, "variant": variant.name, "role": "control",
              "title": variant.shown, "settings": variant.settings,
              "input_model": input_model(spec, settings.control),
              "command": settings.command}  # fmt: skip
    after = score(
        str(model) if model else settings.control, settings, variant.metadata,
        attack=portable_attack(attack, settings),
        labels=(f"{spec.name} + {variant.name} (control)", spec.base_name), is_target=True,
    )  # fmt: skip
    return Control(settings.control, before, after, model, spec.label)
