"""Reading and writing the references of the TOFU and real-world tasks, from any of:

* a reference file written by ``lm-unlearn reference`` (model, data hash, prompt format,
  generation settings and, per row, the generation and the raw truth ratio);
* the ``--log_samples`` file (``samples_tofu_forgetXX_unlearn_*.jsonl``) of a run of the tasks, its
  ``results_*.json`` (the samples file beside it is read), or the lm-eval output folder;
* a legacy TOFU log directory (all four sets) or its ``eval_log_forget.json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness_ext.lm_eval_plugin.task_provenance import TaskProvenance, read_provenance
from harness_ext.metrics.references import (
    REFERENCE_FORMAT,
    ReferenceError,
    ReferenceRow,
    ScoredReference,
)
from harness_ext.metrics.tofu import raw_truth_ratio
from harness_ext.provenance import write_json_atomic
from tofu_tasks import legacy_logs
from tofu_tasks.eval_sets import EVAL_SETS, FORGET


def scoring_run_of(path: Path) -> dict[str, Any] | None:
    """The manifest of the ``lm-unlearn score`` run folder holding ``path`` (itself or up to
    two levels up), if any."""
    path = Path(path).resolve()
    for folder in (path, *list(path.parents)[:3]):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                content = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            return content if isinstance(content, dict) else None
    return None


# ---------------------------------------------------------------- legacy logs
def _from_legacy(path: Path) -> ScoredReference:
    if path.is_dir():
        files = [(s, path / s.legacy_log_file) for s in EVAL_SETS]
        files = [(s, f) for s, f in files if f.is_file()]
    else:
        files = [(FORGET, path)]
    rows = []
    for eval_set, log_path in files:
        for sample in legacy_logs.log_samples(log_path, eval_set):
            ratio = raw_truth_ratio(sample.base_nll, sample.perturbed_nlls)
            rows.append(
                ReferenceRow(eval_set.name, sample.question, sample.generation, ratio, sample.row)
            )
    prompt_format = legacy_logs.prompt_format_of(files[0][1])
    # TOFU's own logs: answer tokens after the prompt plus EOS
    provenance = {"scored_tokens": "tofu"}
    return ScoredReference(str(path), "legacy-log", prompt_format, tuple(rows), provenance)


# ---------------------------------------------------------------- lm-eval output files
def _is_scored_task(task: str) -> bool:
    """The project's tasks whose samples carry per-row generations and truth ratios."""
    from harness_ext.lm_eval_plugin import PROJECT_TASK_PREFIXES

    return task.endswith("_unlearn") and task.startswith(PROJECT_TASK_PREFIXES)


def _samples_for_results(path: Path) -> Path:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReferenceError(f"{path}: not valid JSON ({err.msg})") from err
    tasks = [t for t in results.get("configs", {}) if _is_scored_task(t)]
    if len(tasks) != 1:
        raise ReferenceError(
            f"{path}: expected the results of exactly one tofu_forgetXX_unlearn task, found "
            f"{tasks or 'none'}; pass that run's samples file instead"
        )
    date_id = path.stem.removeprefix("results_")
    samples = path.with_name(f"samples_{tasks[0]}_{date_id}.jsonl")
    if not samples.is_file():
        raise ReferenceError(
            f"{path}: its samples file {samples.name} is missing. Score the reference model "
            f"with --log_samples so the per-row outputs are kept."
        )
    return samples


def _results_for_samples(path: Path) -> dict[str, Any] | None:
    """The results file written with a samples file, if it is beside it."""
    date_id = path.stem.rsplit("_", 1)[-1]
    results = path.with_name(f"results_{date_id}.json")
    if not results.is_file():
        return None
    return json.loads(results.read_text(encoding="utf-8"))


def sample_row(sample: dict[str, Any]) -> ReferenceRow:
    """The reference row of one line of a tofu task's samples file."""
    doc = sample["doc"]
    item = sample.get("model_utility") or sample.get("tofu_model_utility") or {}
    generation = item.get("generation")
    row, nll, mia = doc.get("row"), _nll(sample), _mia_scores(sample)
    responses = sample.get("filtered_resps") or [""]
    if doc["set"] == "holdout" or not isinstance(responses[0], str):
        # holdout rows (and MUSE's privacy texts) are scored, never answered
        return ReferenceRow(doc["set"], doc["question"], None, None, row, nll, mia)
    if generation is None:  # written before the scored generation was recorded
        generation = str(sample["filtered_resps"][0]).strip()
    ratio = item.get("raw_truth_ratio")
    if ratio is None and isinstance(sample.get("forget_quality"), dict):
        ratio = sample["forget_quality"].get("raw_truth_ratio")
    return ReferenceRow(doc["set"], doc["question"], generation, ratio, row, nll, mia)


def _mia_scores(sample: dict[str, Any]) -> dict[str, float]:
    """The row's membership-inference scores by attack (numbers only)."""
    scores = {}
    for key, item in sample.items():
        if key.startswith("mia_") and key.endswith("_auc") and isinstance(item, dict):
            score = item.get("score")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                scores[key.removeprefix("mia_").removesuffix("_auc")] = float(score)
    return scores


def _nll(sample: dict[str, Any]) -> float | None:
    """The ground-truth answer's mean NLL of one sample (the LOSS attack's score)."""
    loss = sample.get("mia_loss_auc")
    if isinstance(loss, dict) and isinstance(loss.get("score"), (int, float)):
        return float(loss["score"])
    scored = (sample.get("model_utility") or {}).get("scored_answers") or {}
    nlls = scored.get("mean_nll")
    return float(nlls[0]) if nlls else None


def mia_results(results: dict[str, Any] | None) -> dict[str, Any]:
    """The membership-inference numbers of a results file ({"mia_loss_auc": ..., ...})."""
    found: dict[str, Any] = {}
    for metrics in ((results or {}).get("results") or {}).values():
        for key, value in metrics.items():
            name = key.split(",", 1)[0]
            if name.startswith("mia_") or name == "privleak":
                found[name] = value
    return found


def read_samples(path: Path) -> list[dict[str, Any]]:
    samples = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                samples.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ReferenceError(f"{path} line {line_no}: not valid JSON ({err.msg})") from err
    return samples


def _from_samples(path: Path) -> ScoredReference:
    samples = read_samples(path)
    rows = [sample_row(s) for s in samples if isinstance(s.get("doc"), dict) and "set" in s["doc"]]
    if not rows:
        raise ReferenceError(
            f"{path}: no tofu rows found; is this the samples file of a tofu_forgetXX_unlearn run?"
        )
    results = _results_for_samples(path)
    record = read_provenance(results)
    prompt_format = (record and record.prompt_format) or _prompt_format_of_samples(samples)
    provenance: dict[str, Any] = {}
    if record and record.prompt_template:
        provenance["prompt_template"] = record.prompt_template
    mia = mia_results(results)
    if mia:
        provenance["mia"] = mia
    if record:  # results written before answers' EOS was scored carry no scored_tokens
        provenance["scored_tokens"] = record.scored_tokens or "answer-only"
    return ScoredReference(str(path), "lm-eval-samples", prompt_format, tuple(rows), provenance)


def _prompt_format_of_samples(samples: list[dict[str, Any]]) -> str | None:
    """The legacy or plain format a samples file's prompts were written in (a samples file
    without its results file does not record it); None when the prompts are another format's."""
    from harness_ext.prompts import PROMPT_FORMATS

    for sample in samples:
        arguments = sample.get("arguments")
        if isinstance(arguments, dict):
            prompt = (arguments.get("gen_args_0") or {}).get("arg_0")
        elif isinstance(arguments, list) and arguments and isinstance(arguments[0], list):
            prompt = arguments[0][0]
        else:
            continue
        question = (sample.get("doc") or {}).get("question")
        if not isinstance(prompt, str) or not isinstance(question, str):
            continue
        for name in ("llama2", "plain", "phi"):
            if prompt == PROMPT_FORMATS[name].prompt.format(question=question):
                return name
        return None
    return None


def _latest_results_in(directory: Path) -> Path:
    """The newest lm-eval results file of a tofu_forgetXX_unlearn run in an output directory."""
    candidates = sorted(directory.glob("**/results_*.json"), key=lambda p: p.stat().st_mtime)
    candidates = [
        p
        for p in candidates
        if any(_is_scored_task(f.name.removeprefix("samples_").rsplit("_", 1)[0])
               for f in p.parent.glob("samples_*.jsonl"))
    ]  # fmt: skip
    if not candidates:
        raise ReferenceError(
            f"{directory}: neither a legacy TOFU log directory (eval_log_forget.json) nor an "
            f"lm-eval output directory with results_*.json and samples_tofu_forget*.jsonl "
            f"(or samples_realworld_unlearn*.jsonl) files"
        )
    return candidates[-1]


# ---------------------------------------------------------------- reference files
def _from_reference_file(path: Path, payload: dict[str, Any]) -> ScoredReference:
    try:
        rows = tuple(
            ReferenceRow(
                r["set"],
                r["question"],
                r.get("generation"),
                r.get("raw_truth_ratio"),
                r.get("row"),
                r.get("answer_nll"),
                dict(r.get("mia_scores") or {}),
            )
            for r in payload["rows"]
        )
    except (KeyError, TypeError) as err:
        raise ReferenceError(f"{path}: malformed reference rows ({err})") from err
    provenance = {k: v for k, v in payload.items() if k != "rows"}
    provenance.setdefault("scored_tokens", "answer-only")  # files from before EOS was scored
    return ScoredReference(
        str(path), "reference-file", payload.get("prompt_format"), rows, provenance
    )


def write_reference_file(
    path: str | Path, rows: list[ReferenceRow], provenance: dict[str, Any]
) -> Path:
    """Write a reference file atomically (see the module docs for what it holds)."""
    payload = {
        "format": REFERENCE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance,
        "rows": [
            {
                "set": r.set_name,
                "row": r.row,
                "question": r.question,
                "generation": r.generation,
                "raw_truth_ratio": r.raw_truth_ratio,
                "answer_nll": r.answer_nll,
                **({"mia_scores": r.mia_scores} if r.mia_scores else {}),
            }
            for r in rows
        ],
    }
    return write_json_atomic(path, payload)


def load_reference(path: str | Path) -> ScoredReference:
    """Load a reference from any of the supported files (see module docs)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ReferenceError(f"reference {path} does not exist")
    reference = _load_reference(path)
    run = scoring_run_of(path)
    if run and run.get("settings_sha256"):
        scoring_run = {"settings_sha256": run["settings_sha256"], "name": run.get("name")}
        provenance = {**reference.provenance, "scoring_run": scoring_run}
        reference = ScoredReference(
            reference.source, reference.kind, reference.prompt_format, reference.rows, provenance
        )
    return reference


def samples_path(path: str | Path) -> Path:
    """The samples file of a scoring run of one of the project's tasks: a run or output folder
    (its newest results), a results file, or the samples file itself."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ReferenceError(f"reference {path} does not exist")
    if path.is_dir():
        path = _latest_results_in(path)
    if path.suffix == ".jsonl":
        return path
    if path.suffix == ".json":
        return _samples_for_results(path)
    raise ReferenceError(f"{path}: not an lm-eval results_*.json or samples_*.jsonl file")


def _load_reference(path: Path) -> ScoredReference:
    if path.is_dir() and not (path / FORGET.legacy_log_file).exists():
        path = _latest_results_in(path)
    try:
        if path.is_dir() or path.name.startswith("eval_"):
            return _from_legacy(path)
        if path.suffix == ".jsonl":
            return _from_samples(path)
        if path.suffix == ".json":
            payload = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(payload, dict):
                raise ReferenceError(
                    f"{path}: a JSON {type(payload).__name__}, not a reference (an lm-unlearn "
                    f"reference file or an lm-eval results file holds a JSON object)"
                )
            if payload.get("format") == REFERENCE_FORMAT:
                return _from_reference_file(path, payload)
            return _from_samples(_samples_for_results(path))
    except legacy_logs.LegacyLogError as err:
        raise ReferenceError(str(err)) from err
    except json.JSONDecodeError as err:
        raise ReferenceError(f"{path}: not valid JSON ({err.msg})") from err
    raise ReferenceError(
        f"{path}: not a recognised reference (an `lm-unlearn reference` file, a legacy TOFU log "
        f"directory or eval_log_*.json, or an lm-eval samples_*.jsonl / results_*.json of a "
        f"tofu_forgetXX_unlearn run)"
    )


def reference_from_results(
    results: dict[str, Any], model: dict[str, Any]
) -> tuple[list[ReferenceRow], dict[str, Any]]:
    """Reference rows and provenance from an in-process lm-eval run (with samples) of the tasks."""
    rows: list[ReferenceRow] = []
    tasks: dict[str, Any] = {}
    prompt_formats = set()
    definitions = set()
    for task, samples in results.get("samples", {}).items():
        record = read_provenance(results, task) or TaskProvenance()
        prompt_formats.add(record.prompt_format)
        definitions.add(json.dumps([record.scored_tokens, record.prompt_template]))
        tasks[task] = {
            "data_sha256": record.data_sha256,
            "data_source": record.data_source,
            "rows_per_set": record.rows_per_set or None,
            "options": record.options or None,
            "generation": record.generation,
        }
        rows += [sample_row(s) for s in samples]
    if not rows:
        raise ReferenceError("the run produced no samples; were the tofu tasks evaluated?")
    if len(prompt_formats) != 1:
        raise ReferenceError(f"the tasks used different prompt formats: {sorted(prompt_formats)}")
    if len(definitions) != 1:
        raise ReferenceError("the tasks scored answers with different definitions")
    scored_tokens, template = json.loads(definitions.pop())
    provenance = {
        "model": model,
        "prompt_format": prompt_formats.pop(),
        "scored_tokens": scored_tokens,
        **({"prompt_template": template} if template else {}),
        "tasks": tasks,
        **({"mia": mia} if (mia := mia_results(results)) else {}),
    }
    return rows, provenance
