"""Retain-model references for forget quality.

Forget quality compares the evaluated model's forget-set truth ratios with those of a retain model
(one never trained on the forget set) on the same rows. A reference can come from:

* a legacy TOFU log directory, or its ``eval_log_forget.json``;
* the ``--log_samples`` file (``samples_tofu_forgetXX_unlearn_*.jsonl``) of an earlier run of the
  ``tofu_*_unlearn`` tasks on the retain model;
* that run's ``results_*.json`` (its samples file, written beside it, is read), or the lm-eval
  output directory holding them (the newest run is used).

Rows are matched by question text, so a reference scored on other rows is an error, not a
silently wrong p-value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness_ext import legacy_logs
from tofu_tasks.eval_sets import FORGET


class ReferenceError(ValueError):
    """A reference file cannot be used."""


@dataclass(frozen=True)
class RetainReference:
    ratios: dict[str, float]  # forget question -> raw truth ratio R
    source: str
    kind: str  # "legacy-log" | "lm-eval-samples"
    prompt_format: str | None

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "prompt_format": self.prompt_format,
            "rows": len(self.ratios),
        }


def _from_legacy(path: Path) -> RetainReference:
    log_path = legacy_logs.forget_log_path(path)
    samples = legacy_logs.log_samples(log_path, FORGET)
    ratios = {s.question: s.metrics()["raw_truth_ratio"] for s in samples}
    return RetainReference(
        ratios, str(log_path), "legacy-log", legacy_logs.prompt_format_of(log_path)
    )


def _samples_for_results(path: Path) -> Path:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReferenceError(f"{path}: not valid JSON ({err.msg})") from err
    tasks = [t for t in results.get("configs", {}) if t.startswith("tofu_") and "forget" in t]
    if len(tasks) != 1:
        raise ReferenceError(
            f"{path}: expected the results of exactly one tofu_forgetXX_unlearn task, found "
            f"{tasks or 'none'}; pass that run's samples file instead"
        )
    date_id = path.stem.removeprefix("results_")
    samples = path.with_name(f"samples_{tasks[0]}_{date_id}.jsonl")
    if not samples.is_file():
        raise ReferenceError(
            f"{path}: its samples file {samples.name} is missing. Score the retain model with "
            f"--log_samples so the per-row truth ratios are kept."
        )
    return samples


def _results_for_samples(path: Path) -> dict[str, Any] | None:
    """The results file written with a samples file, if it is beside it."""
    date_id = path.stem.rsplit("_", 1)[-1]
    results = path.with_name(f"results_{date_id}.json")
    if not results.is_file():
        return None
    return json.loads(results.read_text(encoding="utf-8"))


def _prompt_format_from_results(results: dict[str, Any] | None) -> str | None:
    for config in (results or {}).get("configs", {}).values():
        tofu = (config.get("metadata") or {}).get("tofu") or {}
        if tofu.get("prompt_format"):
            return tofu["prompt_format"]
    return None


def _from_samples(path: Path) -> RetainReference:
    ratios: dict[str, float] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise ReferenceError(f"{path} line {line_no}: not valid JSON ({err.msg})") from err
            item = sample.get("forget_quality")
            if isinstance(item, dict) and "raw_truth_ratio" in item:
                ratios[item["question"]] = float(item["raw_truth_ratio"])
    if not ratios:
        raise ReferenceError(
            f"{path}: no forget-set truth ratios found; is this the samples file of a "
            f"tofu_forgetXX_unlearn run?"
        )
    prompt_format = _prompt_format_from_results(_results_for_samples(path))
    return RetainReference(ratios, str(path), "lm-eval-samples", prompt_format)


def _latest_results_in(directory: Path) -> Path:
    """The newest lm-eval results file of a tofu_forgetXX_unlearn run in an output directory."""
    candidates = sorted(directory.glob("**/results_*.json"), key=lambda p: p.stat().st_mtime)
    candidates = [p for p in candidates if list(p.parent.glob("samples_tofu_forget*"))]
    if not candidates:
        raise ReferenceError(
            f"{directory}: neither a legacy TOFU log directory (eval_log_forget.json) nor an "
            f"lm-eval output directory with results_*.json and samples_tofu_forget*.jsonl files"
        )
    return candidates[-1]


def load_retain_reference(path: str | Path) -> RetainReference:
    """Load a retain-model reference from any of the supported files (see module docs)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ReferenceError(f"retain reference {path} does not exist")
    if path.is_dir() and not (path / FORGET.legacy_log_file).exists():
        path = _latest_results_in(path)
    try:
        if path.is_dir() or path.name == FORGET.legacy_log_file:
            return _from_legacy(path)
        if path.suffix == ".jsonl":
            return _from_samples(path)
        if path.suffix == ".json":
            return _from_samples(_samples_for_results(path))
    except legacy_logs.LegacyLogError as err:
        raise ReferenceError(str(err)) from err
    raise ReferenceError(
        f"{path}: not a recognised reference (a legacy TOFU log directory or "
        f"eval_log_forget.json, or an lm-eval samples_*.jsonl / results_*.json of a "
        f"tofu_forgetXX_unlearn run)"
    )
