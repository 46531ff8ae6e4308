"""Make lm-eval find the project's tasks and its ``hf-unlearn`` backend with no extra flags.

lm-eval 0.4.13 discovers tasks only in its own folder and in ``--include_path``. The installed
``lm_unlearn_autoload.pth`` imports this module at interpreter start; it waits (a meta-path hook,
no lm-eval import) until ``lm_eval.tasks.manager`` is imported and then makes every
``TaskManager`` also scan ``tofu_tasks``, before any user include path so user tasks still win.
When ``lm_eval.models`` is imported it adds ``--model hf-unlearn`` (``harness_ext.lm_eval_plugin.backend``)
to lm-eval's model registry as a lazy entry: nothing is imported until a run asks for it.

Opt out with ``LM_UNLEARN_NO_AUTOLOAD=1``. Nothing is patched when lm-eval has native plugin
discovery (the ``lm_eval.tasks`` entry point declared in pyproject then takes over).
"""

from __future__ import annotations

import os
import sys

OPT_OUT_ENV = "LM_UNLEARN_NO_AUTOLOAD"
TARGET_MODULE = "lm_eval.tasks.manager"
MODELS_MODULE = "lm_eval.models"


def disabled() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() not in ("", "0", "false", "no")


def project_task_dirs() -> list[str]:
    from harness_ext.lm_eval_plugin.benchmarks import task_dirs

    return task_dirs()


def project_tasks_dir() -> str:
    """The folder lm-eval is pointed at (``--include_path``): every benchmark's task YAMLs live
    under the one plug-in package, which lm-eval scans recursively."""
    return project_task_dirs()[0]


def _with_project_tasks(include_path):
    """Project tasks first, then the user's paths (later paths override earlier ones)."""
    from pathlib import Path

    user = [] if include_path is None else include_path
    user = list(user) if isinstance(user, (list, tuple)) else [user]
    given = {Path(p).resolve() for p in user}
    ours = [folder for folder in project_task_dirs() if Path(folder) not in given]
    return [*ours, *user]


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
            _check_metadata(bound.arguments.get("metadata"))
            args, kwargs = bound.args[1:], bound.kwargs
        original(self, *args, **kwargs)

    __init__._lm_unlearn_patched = True
    task_manager.__init__ = __init__


def _check_metadata(metadata) -> None:
    """A mistyped task option stops the run here, before lm-eval loads the model."""
    if isinstance(metadata, dict) and metadata:
        from harness_ext.lm_eval_plugin.benchmarks import check_task_options

        check_task_options(metadata)


def register_backend(_models_module=None) -> None:
    """Name the project's backend in lm-eval's model registry (lazily, once)."""
    from lm_eval.api.registry import model_registry

    from harness_ext.lm_eval_plugin import BACKEND_CLASS, DEFAULT_BACKEND

    if DEFAULT_BACKEND not in model_registry:
        model_registry.register(DEFAULT_BACKEND, target=BACKEND_CLASS)


PATCHES = {TARGET_MODULE: patch_task_manager, MODELS_MODULE: register_backend}


class _PatchingLoader:
    """Delegates to the real loader, then patches the freshly executed module."""

    def __init__(self, loader, patch) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _LmEvalHook:
    """Meta-path finder that patches each module of ``PATCHES`` once, when it is first imported."""

    def __init__(self, pending: set[str]) -> None:
        self.pending = pending

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, PATCHES[fullname])
        return spec


def install() -> None:
    if disabled() or any(isinstance(f, _LmEvalHook) for f in sys.meta_path):
        return
    pending = set()
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:
            pending.add(name)
    if pending:
        sys.meta_path.insert(0, _LmEvalHook(pending))


install()
