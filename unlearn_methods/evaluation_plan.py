"""The plan of evaluation during training (``lm-unlearn train --eval-every N``): which task and
rows each evaluation scores, with which task options, and which checkpoint a selection rule
keeps; every option checked before training starts. The evaluations themselves are
:mod:`unlearn_methods.evaluation`'s.

``options`` below is the run's :class:`unlearn_methods.config.UnlearnConfig`.
"""

from __future__ import annotations

import os
import re
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


def eval_task(options: UnlearnConfig) -> tuple[str, dict[str, Any]]:
    """(task name, its options for the data scored) of ``--eval-forget``, else of the forget
    data unlearned: ``forget10[360:400]`` scores those rows of tofu_forget10_unlearn;
    ``muse-news:forget`` scores muse_news_unlearn, ``muse-news:scal/forget_2`` with that
    split as the member texts of its privacy criterion; ``lume:forget`` scores lume_unlearn."""
    from tofu_tasks.eval_sets import FORGET_SPLITS
    from unlearn_methods.data import LUME_PREFIX, MUSE_PREFIXES, parse_rows_spec

    spec = options.eval_forget or options.forget
    parts = parse_rows_spec(spec)
    name, start, stop = parts[0]
    muse = next((p for p in MUSE_PREFIXES if name.startswith(p)), None)
    if len(parts) == 1 and muse:
        config, _, split = name.removeprefix(muse).rpartition("/")
        texts = {"forget_texts": f"{config}/{split}"} if config else {}
        return f"muse_{MUSE_PREFIXES[muse]}_unlearn", texts
    if len(parts) == 1 and name.startswith(LUME_PREFIX):
        return "lume_unlearn", lume_rows(name.removeprefix(LUME_PREFIX), start, stop)
    if len(parts) != 1 or name not in FORGET_SPLITS:
        raise EvalOptionError(
            f"--eval-every scores a TOFU forget split, a MUSE corpus or LUME and cannot score "
            f"{spec!r}; pass --eval-forget {' or '.join(FORGET_SPLITS)} (optionally cut, e.g. "
            f"forget10[360:400]), {' or '.join(p + 'forget' for p in MUSE_PREFIXES)} or "
            f"lume:forget"
        )
    return f"tofu_{name}_unlearn", forget_rows(start, stop)


def forget_rows(start: int | None, stop: int | None) -> dict[str, Any]:
    """The task option ``forget_rows`` of a rows spec's slice (none for the whole split)."""
    if start is None and stop is None:
        return {}
    return {"forget_rows": f"{start or 0}:{'' if stop is None else stop}"}


def lume_rows(name: str, start: int | None, stop: int | None) -> dict[str, Any]:
    """The task options that score the forget rows ``lume:forget/Task2[start:stop]`` names."""
    from tofu_tasks.lume.data import LumeDataError, split_and_subtask

    try:
        split, subtask = split_and_subtask(name)
    except LumeDataError as err:
        raise EvalOptionError(str(err)) from None
    if split != "forget":
        raise EvalOptionError(
            f"--eval-every scores the forget rows unlearned; lume:{name} are retain rows: pass "
            f"--eval-forget lume:forget (optionally one subtask's rows, lume:forget/Task2[:48])"
        )
    return {**({"subtasks": [subtask]} if subtask else {}), **forget_rows(start, stop)}


def is_muse(task: str) -> bool:
    return task.startswith("muse_")


def own_metrics(task: str) -> list[str] | None:
    """The metrics of a benchmark whose task asks in its own format (MUSE, LUME); None for
    TOFU's tasks."""
    from tofu_tasks.scored_benchmarks import benchmark_of_task

    benchmark = benchmark_of_task(task)
    if benchmark.kind == "tofu":
        return None
    return [entry["metric"] for entry in benchmark.metric_list()]


def evaluation_task_options(
    options: UnlearnConfig, prompt_format: str, task: str, scored: dict[str, Any]
) -> dict[str, Any]:
    """Task options of the evaluations: the user's (``--eval-metadata``), the training's prompt
    format, data and tokenizer, no auxiliary models unless asked for, ``--eval-rows``, and
    ``scored`` (the rows or texts of the data unlearned, :func:`eval_task`). MUSE asks in its
    own format and has no auxiliary models."""
    from tofu_tasks.options import given_task_options

    metadata = given_task_options(options.eval_metadata)  # JSON, or a YAML config's mapping
    metadata.setdefault("tokenizer", options.model)
    if options.trust_remote_code:
        metadata["trust_remote_code"] = True
    if own_metrics(task) is not None:  # MUSE, LUME: their own prompts, no auxiliary models
        folder = options.muse_data_dir if is_muse(task) else options.lume_data_dir
        if folder:
            metadata.setdefault("data_dir", folder)
    else:
        metadata.setdefault("embedding_model", "none")
        metadata.setdefault("nli_model", "none")
        if options.data_dir:
            metadata.setdefault("data_dir", options.data_dir)
        if prompt_format != "chat":
            metadata["prompt_format"] = prompt_format
    if options.eval_rows is not None:
        if options.eval_rows <= 0:
            raise EvalOptionError(f"--eval-rows must be positive, got {options.eval_rows}")
        metadata["max_rows_per_set"] = options.eval_rows
    return {**metadata, **scored}


def scored_docs(task: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents each evaluation scores (the functions the tasks use)."""
    from tofu_tasks.scored_benchmarks import benchmark_of_task

    return benchmark_of_task(task).documents(metadata)


def shown_metric(task: str) -> str:
    """The metric an evaluation's progress line shows when no selection rule names one."""
    if task == "lume_unlearn":
        return "forget_sc_rougeL_recall"
    return "forget_verbmem_rougeL_f1" if is_muse(task) else "forget_rougeL_recall"


def missing_inputs(metric: str, metadata: dict[str, Any]) -> list[str]:
    """What the task options lack for ``metric`` to be a number (empty: nothing)."""
    needs = list(AGGREGATE_NEEDS.get(metric, ()))
    if metric == "privleak" and metadata.get("privleak_reference_auc") is not None:
        needs.remove("retain_reference")  # MUSE's fixed reference AUC instead
    compares_with_before = metric.startswith(("real_authors_", "world_facts_"))
    if metric.endswith("_entailment"):
        needs += ["nli_model"] + ["pre_unlearning_reference"] * compares_with_before
    if metric.endswith("_cosine_similarity"):
        needs += ["embedding_model"] + ["pre_unlearning_reference"] * compares_with_before
    return [n for n in needs if str(metadata.get(n) or "none").lower() == "none"]


def check_computable(rule: SelectionRule, task: str, metadata: dict[str, Any]) -> None:
    missing = missing_inputs(rule.metric, metadata)
    if missing:
        wanted = ", ".join(f"{name} ({NEEDS[name]})" for name in missing)
        examples = {"muse": "retain_knowmem_rougeL_f1, forget_verbmem_rougeL_f1",
                    "lume": "lume_task_aggregate, forget_sc_rougeL_recall"}.get(
            task.split("_", 1)[0], "tofu_model_utility, forget_rougeL_recall")  # fmt: skip
        raise EvalOptionError(
            f"--select {rule.text}: {rule.metric} needs {wanted}, which the evaluations during "
            f"training do not have; give them with --eval-metadata '{{\"{missing[0]}\": ...}}' "
            f"or select a metric that needs none (e.g. {examples})"
        )


def retain_lookup(task: str, metadata: dict[str, Any]):
    """The retain model's value of a metric on the rows each evaluation scores, from the
    evaluations' ``retain_reference`` (None without one)."""
    from unlearn_methods.selection import reference_value

    path = metadata.get("retain_reference")
    if not path:
        return None
    return lambda metric: reference_value(path, metric, scored_docs(task, metadata))


def check_own_rule(options: UnlearnConfig, known: list[str], name: str) -> None:
    """On MUSE and LUME: the rule names one of the task's metrics, and a retain reference gives
    a target only for a membership-inference AUC (their reference rows keep no per-row ROUGE-L
    or exact match)."""
    metric = (options.select or "").split(":", 1)[-1]
    metric = re.split(r"[<>=]", metric, maxsplit=1)[0].strip()
    if metric and metric not in known:
        raise EvalOptionError(
            f"--select {options.select!r}: the {name} task reports {', '.join(known)}"
        )
    if options.select_matching_reference and not metric.startswith("mia_"):
        raise EvalOptionError(
            f"on {name}, --select-matching-reference reads the retain model's membership AUCs "
            f"(--select mia_min_k_auc, ...); for a target of another metric give its value, e.g. "
            f"--select '{known[0]}<=0.3', or keep the checkpoint closest to the retain model's "
            f"privacy with --select best:privleak"
        )


def selection_rule(
    options: UnlearnConfig, task: str, metadata: dict[str, Any]
) -> SelectionRule | None:
    known = own_metrics(task)
    if known is not None:
        check_own_rule(options, known, "MUSE" if is_muse(task) else "LUME")
    if options.select_matching_reference:
        docs = scored_docs(task, metadata)
        rule = matching_rule(options.select, options.select_matching_reference, docs)
    elif options.select:
        rule = parse_rule(options.select, retain_lookup(task, metadata))
    else:
        return None
    check_computable(rule, task, metadata)
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
    task, scored = eval_task(options)
    metadata = evaluation_task_options(options, prompt_format, task, scored)
    try:
        rule = selection_rule(options, task, metadata)
    except SelectionError as err:
        raise EvalOptionError(str(err)) from err
    return EvalPlan(
        every=options.eval_every,
        task=task,
        metadata=metadata,
        apply_chat_template=prompt_format == "chat" and own_metrics(task) is None,
        batch_size=options.per_device_eval_batch_size,
        rule=rule,
        stop=options.stop_at_selection,
    )
