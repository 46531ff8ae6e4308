"""The plan of evaluation during training (``lm-unlearn train --eval-every N``): which task and
rows each evaluation scores, with which task options, and which checkpoint a selection rule
keeps; every option checked before training starts. The evaluations themselves are
:mod:`unlearn_methods.evaluation`'s.

``options`` below is the run's :class:`unlearn_methods.config.UnlearnConfig`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from unlearn_methods.config import UnlearnConfig
from unlearn_methods.selection import SelectionError, SelectionRule, matching_rule, parse_rule

# What a metric needs beyond the model (task options), and why.
NEEDS = {
    "nli_model": "an NLI model (entailment)",
    "embedding_model": "an embedding model (cosine similarity)",
    "pre_unlearning_reference": "the model's outputs before unlearning",
    "retain_reference": "the retain model's scores",
}
AGGREGATE_NEEDS = {
    "model_utility": ("nli_model", "embedding_model", "pre_unlearning_reference"),
    "forget_efficacy": ("nli_model", "embedding_model"),
    "forget_quality": ("retain_reference",),
    "privleak": ("retain_reference",),
    "mia_reference_auc": ("retain_reference",),
}


class EvalOptionError(ValueError):
    """Options of evaluation during training that do not fit together."""


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class EvalPlan:
    """What is scored, how often, and which checkpoint is kept."""

    every: int
    task: str
    metadata: dict[str, Any]
    apply_chat_template: bool
    batch_size: int
    rule: SelectionRule | None = None
    stop: bool = True

    def settings(self) -> dict[str, Any]:
        """The plan as the run settings and the run card record it."""
        return {
            "every": self.every,
            "task": self.task,
            "task_options": self.metadata,
            "apply_chat_template": self.apply_chat_template,
            "batch_size": self.batch_size,
            "selection": self.rule.describe() if self.rule else None,
            "stop_at_selection": self.stop,
        }


def eval_task(options: UnlearnConfig) -> tuple[str, str | None]:
    """(task name, forget_rows) of the forget split scored: ``--eval-forget``, else the one
    unlearned (``forget10[360:400]`` scores those rows of tofu_forget10_unlearn)."""
    from tofu_tasks.eval_sets import FORGET_SPLITS
    from unlearn_methods.data import parse_rows_spec

    spec = options.eval_forget or options.forget
    parts = parse_rows_spec(spec)
    name, start, stop = parts[0]
    if len(parts) != 1 or name not in FORGET_SPLITS:
        raise EvalOptionError(
            f"--eval-every scores a TOFU forget split and cannot score {spec!r}; pass "
            f"--eval-forget {' or '.join(FORGET_SPLITS)} (optionally cut, e.g. forget10[360:400])"
        )
    rows = (
        None if start is None and stop is None else f"{start or 0}:{'' if stop is None else stop}"
    )
    return f"tofu_{name}_unlearn", rows


def evaluation_task_options(
    options: UnlearnConfig, prompt_format: str, forget_rows: str | None
) -> dict[str, Any]:
    """Task options of the evaluations: the user's (``--eval-metadata``), the training's prompt
    format, data and tokenizer, no auxiliary models unless asked for, ``--eval-rows``."""
    from tofu_tasks.options import given_task_options

    metadata = given_task_options(options.eval_metadata)  # JSON, or a YAML config's mapping
    metadata.setdefault("embedding_model", "none")
    metadata.setdefault("nli_model", "none")
    metadata.setdefault("tokenizer", options.model)
    if options.trust_remote_code:
        metadata["trust_remote_code"] = True
    if options.data_dir:
        metadata.setdefault("data_dir", options.data_dir)
    if prompt_format != "chat":
        metadata["prompt_format"] = prompt_format
    if options.eval_rows is not None:
        if options.eval_rows <= 0:
            raise EvalOptionError(f"--eval-rows must be positive, got {options.eval_rows}")
        metadata["max_rows_per_set"] = options.eval_rows
    if forget_rows:
        metadata["forget_rows"] = forget_rows
    return metadata


def scored_docs(task: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents each evaluation scores."""
    from tofu_tasks.documents import eval_docs
    from tofu_tasks.options import TaskOptions

    split = task.removeprefix("tofu_").removesuffix("_unlearn")
    return eval_docs(TaskOptions.for_split(metadata, split))


def missing_inputs(metric: str, metadata: dict[str, Any]) -> list[str]:
    """What the task options lack for ``metric`` to be a number (empty: nothing)."""
    needs = list(AGGREGATE_NEEDS.get(metric, ()))
    compares_with_before = metric.startswith(("real_authors_", "world_facts_"))
    if metric.endswith("_entailment"):
        needs += ["nli_model"] + ["pre_unlearning_reference"] * compares_with_before
    if metric.endswith("_cosine_similarity"):
        needs += ["embedding_model"] + ["pre_unlearning_reference"] * compares_with_before
    return [n for n in needs if str(metadata.get(n) or "none").lower() == "none"]


def check_computable(rule: SelectionRule, metadata: dict[str, Any]) -> None:
    missing = missing_inputs(rule.metric, metadata)
    if missing:
        wanted = ", ".join(f"{name} ({NEEDS[name]})" for name in missing)
        raise EvalOptionError(
            f"--select {rule.text}: {rule.metric} needs {wanted}, which the evaluations during "
            f"training do not have; give them with --eval-metadata '{{\"{missing[0]}\": ...}}' "
            f"or select a metric that needs none (e.g. tofu_model_utility, forget_rougeL_recall)"
        )


def retain_lookup(task: str, metadata: dict[str, Any]):
    """The retain model's value of a metric on the rows each evaluation scores, from the
    evaluations' ``retain_reference`` (None without one)."""
    from unlearn_methods.selection import reference_value

    path = metadata.get("retain_reference")
    if not path:
        return None
    return lambda metric: reference_value(path, metric, scored_docs(task, metadata))


def selection_rule(
    options: UnlearnConfig, task: str, metadata: dict[str, Any]
) -> SelectionRule | None:
    if options.select_matching_reference:
        docs = scored_docs(task, metadata)
        rule = matching_rule(options.select, options.select_matching_reference, docs)
    elif options.select:
        rule = parse_rule(options.select, retain_lookup(task, metadata))
    else:
        return None
    check_computable(rule, metadata)
    return rule


def check_parallelism(options: UnlearnConfig) -> None:
    """Rank 0 scores the whole model: parameters sharded across ranks cannot be scored there."""
    sharded = [
        name
        for name, on in (
            ("DeepSpeed", options.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED")),
            ("FSDP", options.fsdp or os.environ.get("ACCELERATE_USE_FSDP")),
        )
        if on and str(on).lower() not in ("false", "0")
    ]
    if sharded:
        raise EvalOptionError(
            f"--eval-every scores the whole model on rank 0, which {sharded[0]} shards across "
            f"processes; train without it (DDP) or score the saved checkpoints afterwards"
        )


def plan_evaluation(options: UnlearnConfig, prompt_format: str) -> EvalPlan | None:
    """The evaluation plan of a run (None without ``--eval-every``), every option checked."""
    if options.eval_every is None:
        given = [
            flag
            for flag, value in (
                ("--select", options.select),
                ("--select-matching-reference", options.select_matching_reference),
                ("--eval-rows", options.eval_rows),
                ("--eval-forget", options.eval_forget),
                ("--eval-metadata", options.eval_metadata),
            )
            if value is not None
        ]
        if given:
            raise EvalOptionError(
                f"{given[0]} needs --eval-every N (evaluate every N optimiser steps)"
            )
        return None
    if options.eval_every <= 0:
        raise EvalOptionError(
            f"--eval-every must be a positive step count, got {options.eval_every}"
        )
    check_parallelism(options)
    task, forget_rows = eval_task(options)
    metadata = evaluation_task_options(options, prompt_format, forget_rows)
    try:
        rule = selection_rule(options, task, metadata)
    except SelectionError as err:
        raise EvalOptionError(str(err)) from err
    return EvalPlan(
        every=options.eval_every,
        task=task,
        metadata=metadata,
        apply_chat_template=prompt_format == "chat",
        batch_size=options.per_device_eval_batch_size,
        rule=rule,
        stop=options.stop_at_selection,
    )
