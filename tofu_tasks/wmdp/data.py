"""Loading and checking WMDP's and MMLU's questions, and lm-eval's own definitions of their tasks.

WMDP (``cais/wmdp``: configs ``wmdp-bio``, ``wmdp-chem``, ``wmdp-cyber``, split ``test``) holds
the hazardous-knowledge questions; MMLU (``cais/mmlu``: a config per subject, splits ``test`` and
``dev``) the general-knowledge ones. Both are four-choice questions with the same fields:
``question`` (text), ``choices`` (four texts) and ``answer`` (the index of the right choice).
They come from the hub by default, or from local folders holding the same files under the same
dataset card (``data_dir`` / ``WMDP_DATA_DIR`` and ``mmlu_data_dir`` / ``MMLU_DATA_DIR``), which
``datasets.load_dataset`` reads the same way. Every split is checked when it is read; a problem
raises :class:`WmdpDataError` naming the dataset, config, split, row and field.

How a question is asked (the prompt, the choice letters, the per-subject description) is
lm-eval's own: :func:`lm_eval_task_config` reads the YAML of lm-eval's ``wmdp_<domain>`` and
``mmlu_<subject>`` tasks from the installed lm-eval, so the unlearning task asks exactly as they
do.

>>> hub_config("bio"), [d for d in DOMAINS]
('wmdp-bio', ['bio', 'chem', 'cyber'])
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from tofu_tasks.hub_data import load_split, local_folder

WMDP_HUB = "cais/wmdp"
MMLU_HUB = "cais/mmlu"
DOMAINS = ("bio", "chem", "cyber")
WMDP_DIR_ENV = "WMDP_DATA_DIR"
MMLU_DIR_ENV = "MMLU_DATA_DIR"
CHOICES = 4
FIELDS = ("question", "choices", "answer")


class WmdpDataError(ValueError):
    """WMDP or MMLU data is missing, unreadable or not shaped as expected."""


def hub_config(domain: str) -> str:
    """The ``cais/wmdp`` config of a domain."""
    if domain not in DOMAINS:
        raise WmdpDataError(f"unknown WMDP domain {domain!r}; choose from {', '.join(DOMAINS)}")
    return f"wmdp-{domain}"


# ---------------------------------------------------------------------- lm-eval's task definitions
def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


@functools.cache
def lm_eval_task_config(task: str) -> dict[str, Any]:
    """The resolved YAML config of one of lm-eval's own tasks (``wmdp_bio``, ``mmlu_anatomy``):
    its prompt template, choices, target, description and dataset."""
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = "wmdp" if task.startswith("wmdp_") else "mmlu/default"
    path = lm_eval_tasks_dir() / folder / f"{task}.yaml"
    if not path.is_file():
        raise WmdpDataError(f"lm-eval {lm_eval_version()} has no task {task} ({path} is missing)")
    return load_yaml(path)


@functools.cache
def mmlu_subjects() -> tuple[str, ...]:
    """MMLU's subjects, as lm-eval's ``mmlu`` group holds them (its ``mmlu_<subject>`` tasks)."""
    folder = lm_eval_tasks_dir() / "mmlu" / "default"
    return tuple(sorted(p.stem.removeprefix("mmlu_") for p in folder.glob("mmlu_*.yaml")))


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


# ---------------------------------------------------------------------- reading the questions
def resolve_folder(given: str | os.PathLike | None, env: str, what: str) -> Path | None:
    """A local dataset folder: ``given``, else ``$env``, else None (the hub)."""
    return local_folder(given, env, what, WmdpDataError)


def read_questions(
    hub_id: str, config: str, split: str, folder: Path | None, env: str
) -> list[dict[str, Any]]:
    """The checked rows of one split, from the local folder or the hub."""
    rows, where = load_split(hub_id, config, split, folder, env, WmdpDataError)
    check_rows(rows, where)
    return rows


def read_wmdp(domain: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """WMDP's questions of one domain (``test``, its only split)."""
    folder = resolve_folder(data_dir, WMDP_DIR_ENV, "WMDP")
    return read_questions(WMDP_HUB, hub_config(domain), "test", folder, WMDP_DIR_ENV)


def read_mmlu(
    subject: str, data_dir: str | os.PathLike | None = None, split: str = "test"
) -> list[dict[str, Any]]:
    """MMLU's questions of one subject (``test``, or ``dev``: its five examples)."""
    if subject not in mmlu_subjects():
        raise WmdpDataError(
            f"unknown MMLU subject {subject!r}; lm-eval's mmlu has {', '.join(mmlu_subjects())}"
        )
    folder = resolve_folder(data_dir, MMLU_DIR_ENV, "MMLU")
    return read_questions(MMLU_HUB, subject, split, folder, MMLU_DIR_ENV)


def check_rows(rows: list[dict[str, Any]], where: str) -> None:
    """Rows present, each a question with four choices and the index of the right one."""
    if not rows:
        raise WmdpDataError(f"{where} has no rows")
    for index, row in enumerate(rows):
        missing = [name for name in FIELDS if row.get(name) is None]  # datasets fills in None
        if missing:
            raise WmdpDataError(
                f"{where} row {index}: no field {missing[0]!r} (fields: {', '.join(FIELDS)})"
            )
        question, choices, answer = row["question"], row["choices"], row["answer"]
        if not isinstance(question, str) or not question.strip():
            raise WmdpDataError(f"{where} row {index}: field 'question' must be non-empty text")
        if (
            not isinstance(choices, list)
            or len(choices) != CHOICES
            or not all(isinstance(c, str) for c in choices)
        ):
            raise WmdpDataError(
                f"{where} row {index}: field 'choices' must be a list of {CHOICES} texts, got "
                f"{choices!r:.60}"
            )
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < CHOICES:
            raise WmdpDataError(
                f"{where} row {index}: field 'answer' must be the index of the right choice "
                f"(0-{CHOICES - 1}), got {answer!r}"
            )
