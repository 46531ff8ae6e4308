"""Reading scoring runs for the leaderboard: every lm-eval results file under the given
folders (with the ``manifest.json`` of an ``lm-unlearn score`` run), as one record per run: its
label, metrics, comparability and role (a reference of the others, or an attacked model)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance, read_provenance
from harness_ext.workflows.score_inputs import MANIFEST
from tofu_tasks.eval_sets import CLOSER_LOOK_SET_METRICS, EVAL_SETS, FORGET, NEIGHBOR
from tofu_tasks.scored_benchmarks import scored_split

# The set and metric names come from their one definition (tofu_tasks.eval_sets).
SETS = tuple(s.name for s in (*EVAL_SETS, NEIGHBOR))
PER_SET = CLOSER_LOOK_SET_METRICS
AGGREGATES = ("forget_quality", "forget_efficacy", "model_utility", "tofu_model_utility")
# The other benchmarks' headline columns: MUSE's criteria (memorisation of the forget corpus,
# utility on the retain one); WMDP's hazardous knowledge per domain and MMLU, each also as its
# change from the model before unlearning; LUME's scores, and regurgitation and knowledge on
# forget and retain
BENCHMARK_COLUMNS = (
    "forget_verbmem_rougeL_f1", "forget_knowmem_rougeL_f1", "retain_knowmem_rougeL_f1",
    "forget_wmdp_acc", "forget_wmdp_bio_acc", "forget_wmdp_chem_acc", "forget_wmdp_cyber_acc",
    "mmlu_acc", "forget_wmdp_acc_change", "mmlu_acc_change",
    "lume_final_score", "lume_task_aggregate", "lume_mia_score", "forget_sc_rougeL_recall",
    "forget_qa_exact_match", "retain_sc_rougeL_recall", "retain_qa_exact_match",
)  # fmt: skip
SUMMARY_COLUMNS = (
    *AGGREGATES,
    *(f"{FORGET.name}_{m}" for m in ("rougeL_recall", "prob", "truth_ratio")),
    *(f"{name}_rougeL_recall" for name in SETS if name != FORGET.name),
    *BENCHMARK_COLUMNS[:3],  # MUSE's, before the privacy columns every benchmark shares
    "privleak",
    "forget_extraction_strength",
    *BENCHMARK_COLUMNS[3:],
)
# Metrics that are a run's change from the model before unlearning (0 for that model's own run)
CHANGE_FROM_BEFORE = ("forget_wmdp_acc_change", "mmlu_acc_change")
# Membership-inference and memorisation keys (every run reports them; most read "N/A" without a
# holdout): a column only when some run has a number.
PRIVACY_PREFIXES = ("mia_", "privleak", "forget_extraction_strength", "forget_exact_memorization")


@dataclass
class RunRecord:
    label: str
    task: str
    results_file: Path
    run_dir: Path
    manifest: dict[str, Any] | None
    metrics: dict[str, Any]
    comparability: dict[str, Any]
    prompt_format: str | None
    date: float
    fq_reference: str | None = None  # identity of the retain reference of forget quality
    pre_unlearning_reference: str | None = None  # identity of the pre-unlearning reference
    role: str = ""  # "retain reference" / "pre-unlearning reference" when other runs use it
    fq_reference_name: str = ""
    retain_values: dict[str, Any] = field(default_factory=dict)  # the retain model's, same rows
    group: int = 0
    note: str = ""
    differs: tuple[str, ...] = ()
    rank: int | None = None

    def number(self, metric: str) -> float | None:
        value = self.metrics.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return None if math.isnan(value) else float(value)


@dataclass
class Leaderboard:
    records: list[RunRecord]
    markdown: str
    files: list[Path] = field(default_factory=list)
    unread: list[tuple[Path, str]] = field(default_factory=list)  # runs left out, and why


# ---------------------------------------------------------------------- reading runs
def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def result_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(results file, the root it was found under); hidden and partial folders skipped."""
    found = []
    for root in paths:
        root = Path(root)
        if root.is_file():
            found.append((root, root.parent))
        elif root.is_dir():
            found += [
                (f, root) for f in sorted(root.rglob("results_*.json")) if not _hidden(f, root)
            ]
        else:
            raise FileNotFoundError(f"{root} does not exist")
    return found


def _manifest_for(results_file: Path, root: Path) -> tuple[Path, dict[str, Any] | None]:
    folder = results_file.parent
    while True:
        candidate = folder / MANIFEST
        if candidate.is_file():
            return folder, _read_json_object(candidate, f"its {candidate}")
        if folder == root or folder.parent == folder or root not in folder.parents:
            return results_file.parent, None
        folder = folder.parent


def _comparability(task: str, results: dict[str, Any]) -> dict[str, Any]:
    record = read_provenance(results, task) or TaskProvenance()
    models = dict(record.metric_models or {})
    models.pop("token_entropy", None)  # each model's own tokenizer, by definition
    models.pop("notes", None)
    options = record.options or {}
    return {
        "task": task,
        "task_version": results.get("versions", {}).get(task),
        "data_sha256": record.data_sha256,
        "rows_per_set": record.rows_per_set or None,
        "generation_max_length": options.get("generation_max_length"),
        # the same model asked in other words scores differently: one prompt per table
        "prompt_format": record.prompt_format,
        "prompt_template": record.prompt_template or options.get("prompt_template"),
        "metric_variants": record.metric_variants or None,
        "metric_models": models or None,
    }


def _reference_identity(reference: dict[str, Any] | None) -> str | None:
    """What a reference is, wherever its file lives: the scoring run it came from, or its rows."""
    if not reference:
        return None
    if reference.get("identity"):
        return str(reference["identity"])
    # written before references carried their identity: everything but where the file was
    return json.dumps({k: v for k, v in reference.items() if k != "source"}, sort_keys=True)


def _reference_names(
    records: list[RunRecord], tofu_by_record: dict[int, TaskProvenance]
) -> dict[str, str]:
    """Reference identity -> a short name for it (the run's label when it is one of the runs)."""
    names: dict[str, str] = {}
    for record in records:
        tofu = tofu_by_record[id(record)]
        for key in ("forget_quality_reference", "pre_unlearning_reference"):
            reference = getattr(tofu, key) or {}
            identity = _reference_identity(reference)
            if identity:
                names.setdefault(identity, str(reference.get("name") or reference.get("kind")))
    for record in records:
        identity = _run_identity(record)
        if identity in names:
            names[identity] = record.label
    return names


def _run_identity(record: RunRecord) -> str | None:
    settings = (record.manifest or {}).get("settings_sha256")
    return f"run:{settings}" if settings else None


def _label(
    task: str, results: dict[str, Any], manifest: dict[str, Any] | None, results_file: Path
) -> str:
    """What the run is: "ME+GD · SmolLM2-135M-Instruct · forget01" (method or model, base
    model, split); for plain lm-eval results the model's folder or hub name and the split."""
    split = scored_split(task)
    if manifest and manifest.get("name"):
        name = str(manifest["name"])
        return name if name.endswith(f" · {split}") else f"{name} · {split}"
    args = results.get("config", {}).get("model_args") or {}
    if isinstance(args, str):
        from harness_ext.lm_eval_plugin.run import parse_model_args

        args = parse_model_args(args)
    name = str(args.get("peft") or args.get("pretrained") or results.get("model_name") or "")
    return f"{Path(name.rstrip('/')).name or results_file.parent.name} · {split}"


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what} is not readable JSON ({err})") from err
    if not isinstance(content, dict):
        raise ValueError(f"{what} holds a JSON {type(content).__name__}, not an object")
    return content


def read_runs(paths: list[Path], unread: list[tuple[Path, str]] | None = None) -> list[RunRecord]:
    """Every scored ``tofu_*_unlearn`` task under ``paths``, one record per (results file, task).

    A run whose results file or manifest cannot be read is left out and listed in ``unread``
    with the file and the reason; the other runs are read as usual.
    """
    from harness_ext.lm_eval_plugin.results import task_metrics

    records = []
    unread = [] if unread is None else unread
    tofu_by_record: dict[int, TaskProvenance] = {}
    for results_file, root in result_files(paths):
        try:
            results = _read_json_object(results_file, "the results file")
            if not isinstance(results.get("results", {}), dict):
                raise ValueError("the results file has no 'results' object")
            run_dir, manifest = _manifest_for(results_file, root)
        except ValueError as err:
            unread.append((results_file, str(err)))
            print(f"not read: {results_file}: {err}")
            continue
        for task in results.get("results", {}):
            tofu = read_provenance(results, task)
            if tofu is None:  # a task of another harness
                continue
            record = RunRecord(
                label=_label(task, results, manifest, results_file),
                task=task,
                results_file=results_file,
                run_dir=run_dir,
                manifest=manifest,
                metrics=_with_general_ability(task, task_metrics(results, task), results),
                comparability=_comparability(task, results),
                fq_reference=_reference_identity(tofu.forget_quality_reference),
                pre_unlearning_reference=_reference_identity(tofu.pre_unlearning_reference),
                prompt_format=tofu.prompt_format,
                date=float(results.get("date") or results_file.stat().st_mtime),
                retain_values=dict(tofu.retain_values or {}),
            )
            records.append(record)
            tofu_by_record[id(record)] = tofu
    records = _unique_labels(_newest_per_setting(records))
    _mark_references(records, _reference_names(records, tofu_by_record))
    return records


def _mark_references(records: list[RunRecord], names: dict[str, str]) -> None:
    """Runs that other runs used as references say so; the retain reference's forget quality is
    its own truth ratios against themselves (1.0) and its privleak 0 (its AUC against itself),
    which is what the others are measured by."""
    retain = {r.fq_reference for r in records if r.fq_reference}
    pre_unlearning = {r.pre_unlearning_reference for r in records if r.pre_unlearning_reference}
    # the models the unlearned runs were unlearned from (their run cards), where no metric
    # names them as a reference (LUME and MUSE take no pre-unlearning reference)
    unlearned_from = {_model_of(r).get("unlearned_from") for r in records} - {None}
    for record in records:
        identity = _run_identity(record)
        roles = []
        weights = (_model_of(record).get("fingerprint") or {}).get("weights_sha256")
        if weights in unlearned_from and identity not in pre_unlearning:
            roles.append("model before unlearning")
        if identity in retain:
            roles.append("retain reference")
            # (a benchmark without forget quality, such as MUSE or LUME, gets none)
            if "forget_quality" in record.metrics and record.number("forget_quality") is None:
                record.metrics["forget_quality"] = _forget_quality_of_itself(record)
                record.fq_reference = identity
            if record.number("privleak") is None and record.number("mia_min_k_auc") is not None:
                record.metrics["privleak"] = 0.0  # its own AUC against itself, by definition
        if identity in pre_unlearning:
            roles.append("pre-unlearning reference")
            for change in CHANGE_FROM_BEFORE:  # its change from itself: none, by definition
                if change in record.metrics and record.number(change) is None:
                    record.metrics[change] = 0.0
        record.role = " and ".join(roles)
    for record in records:
        record.fq_reference_name = names.get(record.fq_reference or "", "")


def _model_of(record: RunRecord) -> dict[str, Any]:
    model = (record.manifest or {}).get("model")
    return model if isinstance(model, dict) else {}


def _forget_quality_of_itself(record: RunRecord) -> float | str:
    from harness_ext.metrics.references import ReferenceError
    from harness_ext.metrics.tofu import forget_quality
    from tofu_tasks.reference_files import load_reference

    try:
        ratios = [ratio for _, _, ratio in load_reference(record.results_file).forget_ratios]
    except (ReferenceError, OSError) as err:
        return f"N/A ({err})"
    return forget_quality(ratios, ratios) if ratios else "N/A (no forget rows)"


def _with_general_ability(task: str, metrics: dict[str, Any], results: dict) -> dict[str, Any]:
    """A realworld_unlearn run scored together with realworld_general also reports the paper's
    model utility over both (``model_utility_with_general``)."""
    from tofu_tasks import aggregations

    general = aggregations.general_ability(results.get("results", {}))
    if task != "realworld_unlearn" or not general:
        return metrics
    neighbor = {
        m.removeprefix("neighbor_"): v for m, v in metrics.items() if m.startswith("neighbor_")
    }
    return {
        **metrics,
        **general,
        "model_utility_with_general": aggregations.realworld_utility_with_general(
            neighbor, general
        ),
    }


def _newest_per_setting(records: list[RunRecord]) -> list[RunRecord]:
    """A model scored again with identical settings (``--force``) counts once: the newest run."""
    newest: dict[tuple, RunRecord] = {}
    for record in records:
        settings = (record.manifest or {}).get("settings_sha256") or str(record.results_file)
        key = (settings, record.task)
        if key not in newest or record.date > newest[key].date:
            newest[key] = record
    return list(newest.values())


def _unique_labels(records: list[RunRecord]) -> list[RunRecord]:
    by_label: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        by_label[(record.task, record.label)].append(record)
    for same in by_label.values():
        if len(same) > 1:
            for record in same:
                record.label = f"{record.label} ({record.run_dir.name})"
    return records


def selection_of(record: RunRecord) -> dict[str, Any] | None:
    """How the run's checkpoint was chosen during training (``train --select``), if it was."""
    chosen = ((record.manifest or {}).get("model") or {}).get("selection")
    return chosen if isinstance(chosen, dict) and chosen.get("metric") else None
