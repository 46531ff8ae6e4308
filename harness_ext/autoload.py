"""Make lm-eval find the project's tasks with no extra flags.

lm-eval 0.4.13 discovers tasks only in its own folder and in ``--include_path``. The installed
``lm_unlearn_autoload.pth`` imports this module at interpreter start; it waits (a meta-path hook,
no lm-eval import) until ``lm_eval.tasks.manager`` is imported and then makes every
``TaskManager`` also scan ``tofu_tasks``, before any user include path so user tasks still win.

Opt out with ``LM_UNLEARN_NO_AUTOLOAD=1``. Nothing is patched when lm-eval has native plugin
discovery (the ``lm_eval.tasks`` entry point declared in pyproject then takes over).
"""

from __future__ import annotations

import os
import sys

OPT_OUT_ENV = "LM_UNLEARN_NO_AUTOLOAD"
TARGET_MODULE = "lm_eval.tasks.manager"


def disabled() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() not in ("", "0", "false", "no")


def project_tasks_dir() -> str:
    import tofu_tasks

    return str(tofu_tasks.TASKS_DIR)


def _with_project_tasks(include_path):
    """Project tasks first, then the user's paths (later paths override earlier ones)."""
    from pathlib import Path

    user = [] if include_path is None else include_path
    user = list(user) if isinstance(user, (list, tuple)) else [user]
    ours = project_tasks_dir()
    if any(Path(p).resolve() == Path(ours) for p in user):
        return user
    return [ours, *user]


def patch_task_manager(manager_module) -> None:
    """Wrap ``TaskManager.__init__`` so it always includes the project's task folder."""
    if hasattr(manager_module, "discover_plugin_task_paths"):
        return  # lm-eval discovers entry-point plugins itself
    import functools
    import inspect

    task_manager = manager_module.TaskManager
    original = task_manager.__init__
    if getattr(original, "_lm_unlearn_patched", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        if not disabled():
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["include_path"] = _with_project_tasks(
                bound.arguments.get("include_path")
            )
            args, kwargs = bound.args[1:], bound.kwargs
        original(self, *args, **kwargs)

    __init__._lm_unlearn_patched = True
    task_manager.__init__ = __init__


class _PatchingLoader:
    """Delegates to the real loader, then patches the freshly executed module."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        patch_task_manager(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _TaskManagerHook:
    """One-shot meta-path finder for ``lm_eval.tasks.manager``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET_MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    if disabled():
        return
    manager = sys.modules.get(TARGET_MODULE)
    if manager is not None:
        patch_task_manager(manager)
    elif not any(isinstance(f, _TaskManagerHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TaskManagerHook())


install()
