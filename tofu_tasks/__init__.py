"""TOFU as lm-evaluation-harness tasks: ``tofu_forget01_unlearn``, ``tofu_forget05_unlearn``,
``tofu_forget10_unlearn``. This folder holds the task YAMLs; lm-eval finds it through the
project's autoload hook (or ``--include_path $(lm-unlearn tasks-path)``)."""

from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).resolve().parent


def check_task_options(options: dict[str, Any]) -> None:
    """A task option one typo away from a known one (or any unknown ``tofu*`` key) stops the
    run before the model loads; other keys pass (lm-eval hands the model arguments over too)."""
    from tofu_tasks.options import check_option_names, hf_model_arguments

    check_option_names(options, hf_model_arguments())
