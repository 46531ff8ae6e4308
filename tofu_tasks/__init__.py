"""TOFU as lm-evaluation-harness tasks: ``tofu_forget01_unlearn``, ``tofu_forget05_unlearn``,
``tofu_forget10_unlearn``. This folder holds the task YAMLs; lm-eval finds it through the
project's autoload hook (or ``--include_path $(lm-unlearn tasks-path)``)."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
