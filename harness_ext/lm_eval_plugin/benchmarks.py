"""The benchmarks installed as plug-ins of this machinery, found the way lm-eval finds task
plug-ins: the packages this distribution names in the ``lm_eval.tasks`` entry-point group
(``tofu_tasks`` today). The shared layer never imports a benchmark by name: each package gives
its task folder (``TASKS_DIR``) and may check its task options (``check_task_options``)."""

from __future__ import annotations

import functools
from importlib import metadata
from types import ModuleType
from typing import Any

ENTRY_POINT_GROUP = "lm_eval.tasks"
DISTRIBUTION = "lm-unlearn"


@functools.cache
def benchmark_packages() -> tuple[ModuleType, ...]:
    """The benchmark packages of this distribution, in the order its metadata lists them."""
    found = [
        entry.load()
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if entry.dist is not None and entry.dist.name == DISTRIBUTION
    ]
    if not found:
        raise RuntimeError(
            f"no benchmark package in the {ENTRY_POINT_GROUP!r} entry points of {DISTRIBUTION}: "
            f"install the project (pip install -e .) so that its metadata is found"
        )
    return tuple(found)


def task_dirs() -> list[str]:
    """The folders holding the benchmarks' task YAMLs."""
    return [str(package.TASKS_DIR) for package in benchmark_packages()]


def check_task_options(options: dict[str, Any]) -> None:
    """Each benchmark's check of the task options (a mistyped name stops the run)."""
    for package in benchmark_packages():
        check = getattr(package, "check_task_options", None)
        if check is not None:
            check(options)
