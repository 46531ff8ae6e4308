"""Reading the per-sample evaluation logs of the original TOFU release.

A legacy log directory holds one JSON file per eval set (``eval_log_forget.json``,
``eval_log.json``, ``eval_real_author_wo_options.json``, ``eval_real_world_wo_options.json``), each
mapping a quantity to ``{row index: value}``. ``generated_text`` rows are
``[prompt, generation, ground truth]`` (the ROUGE values logged beside them are recall of the third
in the second). Truth ratios are rebuilt from the logged per-token losses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness_ext.metrics.aggregate import SampleScore
from tofu_tasks.eval_sets import EVAL_SETS, FORGET, EvalSet

REQUIRED_KEYS = ("generated_text", "avg_gt_loss", "avg_paraphrased_loss", "average_perturb_loss")
LEGACY_PROMPTS = {"llama2": ("[INST] ", " [/INST]"), "phi": ("Question: ", "\n")}


class LegacyLogError(ValueError):
    """A legacy TOFU log is missing or malformed."""


def read_log(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise LegacyLogError(f"legacy TOFU log {path} not found")
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LegacyLogError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    missing = [key for key in REQUIRED_KEYS if key not in log]
    if missing:
        raise LegacyLogError(f"{path}: missing {', '.join(missing)}; is this a TOFU eval log?")
    return log


def split_legacy_prompt(prompt: str) -> tuple[str, str]:
    """(question, prompt format name) of a logged legacy prompt."""
    for name, (start, end) in LEGACY_PROMPTS.items():
        if prompt.startswith(start) and prompt.endswith(end):
            return prompt[len(start) : len(prompt) - len(end)], name
    raise LegacyLogError(f"unrecognised legacy prompt {prompt[:60]!r}")


def _rows(log: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(log["generated_text"], key=int)


def log_samples(path: str | Path, eval_set: EvalSet) -> list[SampleScore]:
    """One :class:`SampleScore` per logged row, in row order."""
    log = read_log(path)
    samples = []
    for row in _rows(log):
        try:
            prompt, generation, target = log["generated_text"][row]
            perturbed = tuple(float(v) for v in log["average_perturb_loss"][row])
            samples.append(
                SampleScore(
                    eval_set=eval_set,
                    question=split_legacy_prompt(prompt)[0],
                    generation=generation,
                    target=target,
                    answer_nll=float(log["avg_gt_loss"][row]),
                    base_nll=float(log["avg_paraphrased_loss"][row]),
                    perturbed_nlls=perturbed,
                    row=int(row),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise LegacyLogError(f"{path} row {row}: {type(err).__name__}: {err}") from err
        if len(perturbed) != eval_set.n_perturbed:
            raise LegacyLogError(
                f"{path} row {row}: expected {eval_set.n_perturbed} perturbed losses, "
                f"found {len(perturbed)}"
            )
    return samples


def directory_samples(log_dir: str | Path) -> list[SampleScore]:
    """Samples of every eval set in a legacy log directory (all four files required)."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise LegacyLogError(f"legacy log directory {log_dir} not found")
    samples: list[SampleScore] = []
    for eval_set in EVAL_SETS:
        samples += log_samples(log_dir / eval_set.legacy_log_file, eval_set)
    return samples


def prompt_format_of(path: str | Path) -> str:
    """The legacy prompt format ("llama2" or "phi") a log was scored with."""
    log = read_log(path)
    return split_legacy_prompt(log["generated_text"][_rows(log)[0]][0])[1]


def forget_log_path(path: str | Path) -> Path:
    """The forget-set log of a legacy directory, or the file itself."""
    path = Path(path)
    return path / FORGET.legacy_log_file if path.is_dir() else path
