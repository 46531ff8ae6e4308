"""The audit's scores: every attacked model scored as a normal scoring run, and the scores before
the attack and of the target read from runs already made (aggregated over the rows the attack
scores, exactly as the task aggregates them)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness_ext.metrics.recovery import forget_metrics
from harness_ext.workflows.audit_settings import (
    AuditError,
    AuditSettings,
    Control,
    Scores,
    Variant,
    audited,
    target_is_run,
)
from harness_ext.workflows.score import score_model
from harness_ext.workflows.score_inputs import (
    MANIFEST,
    ModelSpec,
    ScoreSettings,
    resolve_model,
    scoring_prompt_format,
)


# ---------------------------------------------------------------------- scoring
def score(
    model: str,
    settings: AuditSettings,
    metadata: dict[str, Any],
    *,
    attack: dict[str, Any] | None = None,
    labels: tuple[str | None, str | None] = (None, None),
    base: str | None = None,
    is_target: bool = False,
) -> Scores:
    """A normal ``lm-unlearn score`` run; returns its forget metrics and where it lives."""
    from harness_ext.lm_eval_plugin.results import latest_results, task_metrics

    scoring = replace(settings.scoring, metadata=metadata, attack=attack, label=labels[0],
                      base_label=labels[1])  # fmt: skip
    if is_target:  # the model before unlearning is not compared with its own outputs
        scoring.pre_unlearning_reference = None
    if metadata.get("forget_question") == "paraphrased":
        scoring.retain_reference = None  # its rows are asked in the original words
    outcome = score_model(model, scoring, base=base)
    manifest = json.loads((outcome.run_dir / MANIFEST).read_text(encoding="utf-8"))
    metrics = task_metrics(latest_results(outcome.run_dir), scoring.task)
    rows = run_samples(results_file_of(outcome.run_dir), scoring.task)
    return Scores(
        forget_metrics(metrics), outcome.run_dir.name, manifest.get("settings_sha256"), rows=rows,
        seconds=float(manifest.get("wall_seconds") or 0.0),
    )  # fmt: skip


def role(variant: Variant, name: str) -> dict[str, Any]:
    """The attack section of a run that is not itself attacked but scored for the audit. It
    names no attack: every attack that scores the same rows shares the run."""
    return {"name": "none", "role": name}


def score_before(settings: AuditSettings, spec: ModelSpec, variant: Variant) -> Scores:
    """The unlearned model on the attacked run's rows (original questions). On the usual rows it
    is an ordinary scoring run, the same as ``lm-unlearn score MODEL`` makes; on fewer rows, the
    ordinary run's per-row numbers over those rows when that run exists (no second scoring)."""
    usual = variant.before_metadata == settings.scoring.metadata
    made = None if usual else usual_run(settings, settings.model, settings.base)
    if made and (derived := scores_from_run(made, settings, variant.before_metadata)):
        return derived
    label = None if usual else f"{spec.name} ({rows_scored(variant.before_metadata, settings)})"
    return score(
        settings.model, settings, variant.before_metadata,
        attack=None if usual else role(variant, "before"),
        labels=(label or settings.scoring.label, spec.base_name if label else None),
        base=settings.base,
    )  # fmt: skip


def usual_run(
    settings: AuditSettings, model: str, base: str | None = None, *, as_target: bool = False
) -> Path | None:
    """The model's ordinary scoring run in the runs folder (``lm-unlearn score`` with the audit's
    task options and references), if one was made. A control (``as_target``) is also looked up
    as scored without references, as a retain model usually is."""
    from harness_ext.workflows.score_runs import find_scored, settings_hash, settings_key

    spec = resolve_model(model, base)
    scoring = replace(settings.scoring, attack=None, label=None, base_label=None)
    candidates = [scoring]
    if as_target:
        scoring = replace(scoring, pre_unlearning_reference=None)
        candidates = [scoring, replace(scoring, retain_reference=None)]
    prompt_format, _ = scoring_prompt_format(spec, scoring)
    for candidate in candidates:
        key = settings_key(spec, candidate, prompt_format)
        if found := find_scored(Path(candidate.output), settings_hash(key)):
            return found
    return None


def task_aggregations(wanted, scoring: ScoreSettings) -> dict[str, Any]:
    """The scored task's aggregation function of each metric named in ``wanted`` that has
    one."""
    from tofu_tasks import metric_list as tofu
    from tofu_tasks.lume import metric_list as lume
    from tofu_tasks.wmdp import metric_list as wmdp

    entries = scoring.benchmark.metric_list()
    functions = {**tofu.AGGREGATIONS, **wmdp.AGGREGATIONS, **lume.AGGREGATIONS}
    return {
        entry["metric"]: functions[entry["aggregation"]]
        for entry in entries
        if wanted(entry["metric"]) and entry["aggregation"] in functions
    }


def scores_from_run(run: Path, settings: AuditSettings, metadata: dict[str, Any]) -> Scores | None:
    """A run's (its folder's, or its results file's) forget metrics on the rows ``metadata``
    selects, aggregated from its per-row numbers exactly as the task aggregates them (the same
    values a run of those rows alone gives); None when the run lacks one of the rows or asked it
    in other words."""
    rows = run_samples(results_file_of(run), settings.scoring.task)
    return scores_from_rows(run, rows, wanted_forget_docs(settings, metadata), settings, metadata)


def scores_from_rows(
    run: Path,
    rows: dict[tuple[str, int], dict[str, Any]],
    wanted: dict[tuple[str, int], dict[str, Any]],
    settings: AuditSettings,
    metadata: dict[str, Any],
) -> Scores | None:
    """The forget metrics of ``wanted`` aggregated from a run's per-row numbers ``rows``."""
    if any(
        key not in rows or rows[key].get("doc", {}).get("question") != doc.get("question")
        for key, doc in wanted.items()
    ):
        return None
    subset = {key: rows[key] for key in wanted}
    metrics = {}
    forget = lambda name: name.startswith("forget_")  # noqa: E731
    for name, aggregate in task_aggregations(forget, settings.scoring).items():
        if values := [row[name] for row in subset.values() if name in row]:
            metrics[name] = aggregate(values)
    manifest_file = run / MANIFEST
    digest = None
    if manifest_file.is_file():
        digest = json.loads(manifest_file.read_text(encoding="utf-8")).get("settings_sha256")
    note = f"{rows_scored(metadata, settings)}: aggregated from this run's per-row numbers"
    return Scores(forget_metrics(metrics), run.name, digest, note, rows=subset)


def rows_scored(metadata: dict[str, Any], settings: AuditSettings) -> str:
    """How a before run's rows differ from the usual ones (several attacks share it)."""
    from tofu_tasks.data import set_names

    sets, benchmark = set_names(metadata.get("sets") or []), audited(settings.scoring)
    if not sets:
        named = None
    elif list(sets) == list(benchmark.sets):
        named = benchmark.described
    else:
        named = f"sets {', '.join(sets)}"
    if metadata.get("forget_rows"):
        return f"rows {metadata['forget_rows']}" + (f" of the {named}" if named else "")
    return named or "other rows"


def score_target(settings: AuditSettings, variant: Variant) -> Scores | None:
    """The model before unlearning on the attacked run's rows and questions."""
    if not settings.target:
        return None
    if target_is_run(settings.target):
        return target_from_run(Path(settings.target), settings, variant.metadata)
    usual = variant.metadata == settings.scoring.metadata
    spec = resolve_model(settings.target)
    return score(
        settings.target, settings, variant.metadata,
        attack=None if usual else role(variant, "target"),
        labels=(None, None) if usual else (f"{spec.name} ({variant.scored})", spec.base_name),
        is_target=True,
    )  # fmt: skip


def score_after(
    settings: AuditSettings,
    spec: ModelSpec,
    variant: Variant,
    model: Path | None,
    before: Scores,
    target: Scores | None,
    noise: dict[str, float] | None = None,
    control: Control | None = None,
) -> Scores:
    attack = {
        "name": variant.attack, "variant": variant.name, "role": "after",
        "title": variant.shown, "settings": variant.settings, "input_model": input_model(spec, settings.model),
        "before": before.describe(), "target": target_section(settings, target),
        "gap_noise": noise or None, "control": control.describe() if control else None,
        "command": settings.command,
    }  # fmt: skip
    return score(
        str(model) if model else settings.model, settings, variant.metadata,
        attack=portable_attack(attack, settings), labels=(f"{spec.name} + {variant.name}", spec.base_name),
        base=None if model else settings.base,
    )  # fmt: skip


def input_model(spec: ModelSpec, given: str) -> dict[str, Any]:
    return {"given": given, "label": spec.label, "name": spec.name,
            "base_name": spec.base_name, "fingerprint": spec.fingerprint}  # fmt: skip


def target_section(settings: AuditSettings, target: Scores | None) -> dict[str, Any] | None:
    return {"source": settings.target, **target.describe()} if target else None


def portable_attack(attack: dict[str, Any], settings: AuditSettings) -> dict[str, Any]:
    """Local paths in the attack section, relative to the runs folder (as in the manifest)."""
    from harness_ext.provenance import portable_paths, relative_stand_ins

    spec = resolve_model(settings.model, settings.base)
    paths = [settings.model, spec.pretrained, spec.peft, settings.target, settings.control,
             settings.output, settings.scoring.output, settings.models_dir]  # fmt: skip
    return portable_paths(attack, relative_stand_ins(paths, settings.scoring.output))


# ---------------------------------------------------------------------- a target run's scores
def target_from_run(path: Path, settings: AuditSettings, metadata: dict[str, Any]) -> Scores:
    """The target's forget metrics from its scoring run: the run's own when it scored exactly
    these forget rows, else aggregated from its per-row numbers over the rows wanted."""
    from harness_ext.lm_eval_plugin.results import task_metrics

    task = settings.scoring.task
    results_file = results_file_of(path)
    results = json.loads(results_file.read_text(encoding="utf-8"))
    if task not in results.get("results", {}):
        raise AuditError(f"--target {path}: its results have no {task} scores")
    wanted = wanted_forget_docs(settings, metadata)
    rows = run_samples(results_file, task)
    if {(name, row, doc["question"]) for (name, row), doc in wanted.items()} == set(
        by_forget_question(rows, settings)
    ):
        return Scores(forget_metrics(task_metrics(results, task)), str(path), rows=rows)
    derived = scores_from_rows(path, rows, wanted, settings, metadata)
    if derived is None:
        note = "the target run did not score these forget rows and questions"
        return Scores({}, str(path), note=note)
    derived.run = str(path)
    return derived


def results_file_of(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("**/results_*.json"), key=lambda p: p.stat().st_mtime)
    return files[-1]


def wanted_forget_docs(
    settings: AuditSettings, metadata: dict[str, Any]
) -> dict[tuple[str, int], dict[str, Any]]:
    """The forget documents ``metadata`` selects, by (set, row): forget metrics are aggregated
    over the forget rows alone, so the other sets need not be in a run that gives them."""
    forget_sets = audited(settings.scoring).forget_sets
    docs = replace(settings.scoring, metadata=metadata).eval_docs()
    return {(d["set"], d["row"]): d for d in docs if d["set"] in forget_sets}


def by_forget_question(
    rows: dict[tuple[str, int], dict[str, Any]], settings: AuditSettings
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """A run's forget rows by (set, row, question)."""
    forget_sets = audited(settings.scoring).forget_sets
    return {
        (name, row, sample["doc"]["question"]): sample
        for (name, row), sample in rows.items()
        if name in forget_sets
    }


def run_samples(results_file: Path, task: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every scored document of a run's samples file by (set, row): its per-row values."""
    found = samples_file_of(results_file, task)
    samples = {}
    for line in found.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line) if line.strip() else {}
        doc = sample.get("doc") or {}
        if "set" in doc:
            samples[(doc["set"], doc["row"])] = sample
    return samples


def samples_file_of(results_file: Path, task: str) -> Path:
    stamp = results_file.stem.removeprefix("results_")
    found = results_file.parent / f"samples_{task}_{stamp}.jsonl"
    if not found.is_file():
        candidates = sorted(results_file.parent.glob(f"samples_{task}_*.jsonl"))
        if not candidates:
            raise AuditError(f"{results_file}: no samples file beside it (--log_samples)")
        found = candidates[-1]
    return found


def forget_samples(
    results_file: Path, settings: AuditSettings
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """A run's forget rows by (set, row, question), from its samples file."""
    return by_forget_question(run_samples(results_file, settings.scoring.task), settings)
