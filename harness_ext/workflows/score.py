"""``lm-unlearn score``: score checkpoints made anywhere on a ``tofu_*_unlearn`` task, in one command.

A model is a hub id, a local checkpoint directory or a PEFT adapter directory (its base read from
``adapter_config.json`` unless ``--base`` is given). Scoring goes through lm-eval in process, with
every lm-eval model argument passed through. Each run gets its own folder under the output
directory holding lm-eval's own results and samples files plus ``manifest.json``::

    results/runs/<model>-<split>-<settings hash>/
        manifest.json                      # what was scored, how, with what, by whom
        <model_name_sanitized>/results_<date>.json
        <model_name_sanitized>/samples_tofu_forget01_unlearn_<date>.jsonl

The folder is assembled under a hidden temporary name and renamed into place when complete, so a
run that fails or is killed leaves nothing a leaderboard reads. The settings hash covers the model
(weights hash or hub revision), the adapter, the task options and the model arguments: a model
already scored with identical settings is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND
from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance, read_provenance
from harness_ext.provenance import (
    git_commit,
    hardware,
    package_versions,
    portable_paths,
    relative_stand_ins,
    write_json_atomic,
)
from harness_ext.workflows.score_inputs import (
    MANIFEST,
    MANIFEST_FORMAT,
    PARTIAL_PREFIX,
    ModelSpec,
    ScoreError,
    ScoreSettings,
    checkpoint_selection,
    requested_prompt_format,
    resolve_model,
    scoring_prompt_format,
    unlearned_from,
)
from harness_ext.workflows.score_runs import (
    find_scored,
    model_arguments,
    run_name,
    run_task_options,
    settings_hash,
    settings_key,
    slug,
)


@dataclass
class ScoreOutcome:
    model: str
    run_dir: Path
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def score_model(model: str, settings: ScoreSettings, base: str | None = None) -> ScoreOutcome:
    """Score one model; returns where its run lives (skips it when already scored)."""
    spec = resolve_model(model, base)
    if settings.label:
        spec.name = settings.label
    if settings.base_label:
        spec.base_name = settings.base_label
    requested = requested_prompt_format(settings)
    prompt_format, why = scoring_prompt_format(spec, settings)
    key = settings_key(spec, settings, prompt_format)
    name = run_name(spec, settings, key)
    final = settings.output / name
    scored = find_scored(settings.output, settings_hash(key))
    if scored and not settings.force:
        print(f"{model}: already scored with identical settings in {scored}; skipped")
        return ScoreOutcome(model, scored, skipped=True)
    print(f"{model}: scoring on {settings.task}, prompt format {prompt_format} ({why})")
    if prompt_format == "chat" and requested is None:
        # lm_eval itself asks in the plain format unless given --apply_chat_template
        print(
            f"{model}: NOTE: the chat template formats the questions, as `lm_eval "
            f"--apply_chat_template` does; a plain `lm_eval` run of this model asks in the plain "
            f"format, scores differently, and is never ranked in one table with this run "
            f"(--prompt-format plain scores as it does)",
            file=sys.stderr,
        )
    settings.output.mkdir(parents=True, exist_ok=True)
    partial = settings.output / f"{PARTIAL_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        started = time.time()
        stand_ins = local_stand_ins(spec, settings)
        results = _evaluate(spec, settings, prompt_format, partial, stand_ins)
        files = sorted(str(f.relative_to(partial)) for f in partial.rglob("*") if f.is_file())
        manifest = build_manifest(spec, settings, prompt_format, why, key, results, files)
        manifest["wall_seconds"] = round(time.time() - started, 2)
        write_json_atomic(partial / MANIFEST, portable_paths(manifest, stand_ins))
        _move_into_place(partial, final, settings.force)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    from harness_ext.lm_eval_plugin.results import task_metrics

    return ScoreOutcome(model, final, skipped=False, metrics=task_metrics(results, settings.task))


def local_stand_ins(spec: ModelSpec, settings: ScoreSettings) -> dict[str, str]:
    """Local paths a run's files would name -> their path relative to the results folder (the
    project's task folder -> ``tofu_tasks``), so that no file names the scoring machine's folders."""
    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir

    metadata = settings.metadata
    paths = [spec.pretrained, spec.peft, spec.source, settings.retain_reference,
             settings.pre_unlearning_reference, metadata.get("data_dir"),
             metadata.get("tokenizer"), *settings.data_folders(),
             *(v for v in model_arguments(spec, settings).values() if isinstance(v, str))]  # fmt: skip
    stand_ins = relative_stand_ins(paths, settings.output)
    tasks = Path(project_tasks_dir())
    stand_ins.update({str(tasks): tasks.name, str(tasks.resolve()): tasks.name})
    return stand_ins


def _evaluate(
    spec: ModelSpec,
    settings: ScoreSettings,
    prompt_format: str,
    folder: Path,
    stand_ins: dict[str, str],
) -> dict:
    from lm_eval.loggers import EvaluationTracker

    from harness_ext.lm_eval_plugin.run import run_tasks

    tracker = EvaluationTracker(output_path=str(folder))
    results = run_tasks(
        model_arguments(spec, settings),
        [settings.task],
        backend=settings.backend,
        metadata=run_task_options(spec, settings, prompt_format),
        apply_chat_template=prompt_format == "chat",
        batch_size=settings.batch_size,
        device=settings.device,
        evaluation_tracker=tracker,
    )
    if results is None:  # a non-zero rank under a multi-process launcher
        raise ScoreError("lm-eval returned no results")
    samples = results.pop("samples", None)
    # lm-eval names the folder and the model after `pretrained`, a path of this machine
    general = tracker.general_config_tracker
    general.model_name = portable_paths(general.model_name, stand_ins)
    general.model_name_sanitized = slug(spec.label)
    results = portable_paths(results, stand_ins)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        if samples and task_name in samples:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return results


def _move_into_place(partial: Path, final: Path, force: bool) -> None:
    if force and final.exists():
        retired = final.with_name(f"{PARTIAL_PREFIX}{final.name}-old-{os.getpid()}")
        os.replace(final, retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        os.rename(partial, final)  # atomic: the leaderboard sees all of the run or none of it
    except OSError:
        if (final / MANIFEST).is_file():  # another process scored the same settings meanwhile
            print(f"{final} was completed by another run meanwhile; kept that one")
            return
        raise


def build_manifest(spec, settings, prompt_format, why, key, results, files) -> dict[str, Any]:
    task = settings.task
    record = read_provenance(results, task) or TaskProvenance()
    return {
        "format": MANIFEST_FORMAT,
        "name": f"{spec.label} · {settings.split}",
        "model": {
            "name": spec.name,
            "base_name": spec.base_name,
            "given": spec.source,
            "pretrained": spec.pretrained,
            "peft": spec.peft,
            "fingerprint": spec.fingerprint,
            **({"selection": chosen} if (chosen := checkpoint_selection(spec)) else {}),
            **({"unlearned_from": before} if (before := unlearned_from(spec)) else {}),
        },
        "task": task,
        "task_version": results.get("versions", {}).get(task),
        "backend": settings.backend,
        "model_args": key["model_args"],
        "prompt_format": {"name": prompt_format, "why": why},
        "data": {
            "source": record.data_source,
            "sha256": record.data_sha256,
            "rows_per_set": record.rows_per_set,
        },
        "generation": record.generation,
        "metric_variants": record.metric_variants,
        "metric_models": record.metric_models,
        "references": {
            "retain": settings.retain_reference,
            "retain_identity": key["retain_reference"],
            "pre_unlearning": settings.pre_unlearning_reference,
            "pre_unlearning_identity": key["pre_unlearning_reference"],
        },
        "task_metadata": settings.metadata,
        **({"attack": settings.attack} if settings.attack else {}),
        "settings_sha256": settings_hash(key),
        "files": files,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_seconds": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rerun": rerun_command(spec, settings, prompt_format),
        "rerun_from": "the results folder holding this run folder (paths are relative to it)",
    }


def rerun_command(spec: ModelSpec, settings: ScoreSettings, prompt_format: str) -> str:
    """The command that scores the model again; run from the results folder (its paths are
    rewritten relative to it when the manifest is written)."""
    parts = ["lm-unlearn", "score", spec.source]
    if spec.peft:
        parts += ["--base", spec.pretrained]
    parts += ["--forget", settings.split]
    if not settings.benchmark.own_prompt_format:
        parts += ["--prompt-format", prompt_format]
    if settings.label:
        parts += ["--label", settings.label]
    if settings.model_args:
        parts += ["--model-args", settings.model_args]
    if settings.backend != DEFAULT_BACKEND:
        parts += ["--backend", settings.backend]
    if settings.metadata:
        parts += ["--metadata", json.dumps(settings.metadata, sort_keys=True)]
    if settings.retain_reference:
        parts += ["--reference", settings.retain_reference]
    if settings.pre_unlearning_reference:
        parts += ["--pre-unlearning-reference", settings.pre_unlearning_reference]
    parts += ["--output", "."]
    return " ".join(_quote(p) for p in parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
