"""Running the project's tasks through lm-eval in process (``simple_evaluate``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND, PROJECT_TASK_PREFIXES


def parse_model_args(text: str | None) -> dict[str, Any]:
    """lm-eval's ``key=value,key=value`` model arguments, typed as lm-eval types them."""
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(text or "")


NEEDS_LM_EVAL_TASKS = {"realworld_general"}  # a group of lm-eval's built-in tasks


def run_tasks(
    model_args: dict[str, Any],
    tasks: Sequence[str],
    *,
    backend: str = DEFAULT_BACKEND,
    metadata: dict[str, Any] | None = None,
    apply_chat_template: bool = False,
    batch_size: str | int = "auto",
    device: str | None = None,
    log_samples: bool = True,
    bootstrap_iters: int = 0,
    evaluation_tracker=None,
) -> dict[str, Any]:
    """Evaluate ``tasks`` with lm-eval; model args reach the tasks as metadata, as on the CLI."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir
    from harness_ext.metrics.output_quality import resolve_device

    if backend == DEFAULT_BACKEND:
        import harness_ext.lm_eval_plugin.backend  # noqa: F401  (registers it even with autoload off)

    task_metadata = {**model_args, **(metadata or {})}
    # Indexing lm-eval's own ~15k task files costs seconds per call; skip it when only the
    # project's tasks are asked for.
    ours = all(str(t).startswith(PROJECT_TASK_PREFIXES) for t in tasks) and not any(
        t in NEEDS_LM_EVAL_TASKS for t in tasks
    )
    manager = TaskManager(
        include_path=project_tasks_dir(), include_defaults=not ours, metadata=task_metadata
    )
    return simple_evaluate(
        model=backend,
        model_args=model_args,
        tasks=list(tasks),
        task_manager=manager,
        apply_chat_template=apply_chat_template,
        batch_size=batch_size,
        device=resolve_device(device),  # lm-eval's hf backend defaults to cuda even without one
        log_samples=log_samples,
        bootstrap_iters=bootstrap_iters,
        evaluation_tracker=evaluation_tracker,
    )


def evaluate_model_object(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    metadata: dict[str, Any],
    apply_chat_template: bool = False,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Evaluate a model held in memory (the model being trained, say) with the ``hf-unlearn``
    backend wrapped around it: nothing is written to disk or loaded again.

    The model is scored on its own device by this process alone (lm-eval's backends do not split
    the documents of a model object between processes). The tasks count answer tokens with the
    tokenizer named by ``metadata["tokenizer"]`` (a path or hub id). No global random seed is
    set, so a training run's random state is left as it was.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir
    from harness_ext.lm_eval_plugin.backend import UnlearnHFLM

    lm_eval_logger = logging.getLogger("lm_eval")
    level = lm_eval_logger.level
    lm_eval_logger.setLevel(logging.ERROR)  # the warnings about a model object are expected
    try:
        lm = UnlearnHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    finally:
        lm_eval_logger.setLevel(level)
    manager = TaskManager(
        include_path=project_tasks_dir(), include_defaults=False, metadata=metadata
    )
    return simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        apply_chat_template=apply_chat_template,
        log_samples=False,
        bootstrap_iters=0,
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
    )
