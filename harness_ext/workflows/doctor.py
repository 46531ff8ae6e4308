"""``lm-unlearn doctor``: what a bug report needs, in one command.

Reports package versions, the hardware, whether ``lm_eval`` finds the project's tasks by itself
(the autoload hook), where TOFU is read from and whether its files pass their checks, and which
metric models load (the defaults, or the ones given).
"""

from __future__ import annotations

import os
import sys


def _check(name: str, function) -> tuple[str, bool, str]:
    try:
        return name, True, str(function())
    except Exception as err:  # noqa: BLE001  (a doctor reports every failure, whatever its kind)
        return name, False, f"{type(err).__name__}: {err}"


def autoload_status() -> str:
    from harness_ext.lm_eval_plugin import autoload

    if autoload.disabled():
        return (
            f'off ({autoload.OPT_OUT_ENV} is set): pass --include_path "$(lm-unlearn tasks-path)"'
        )
    import lm_eval.tasks.manager as manager

    patched = getattr(manager.TaskManager.__init__, "_lm_unlearn_patched", False)
    native = hasattr(manager, "discover_plugin_task_paths")
    if not (patched or native):
        raise RuntimeError(
            "lm_eval does not see the tofu_* tasks: the lm_unlearn_autoload.pth hook did not run "
            "(reinstall with pip install -e .) — or use lm-unlearn eval / --include_path"
        )
    import lm_eval.models  # noqa: F401  (where the hook names the backend)
    from lm_eval.api.registry import model_registry

    from harness_ext.lm_eval_plugin import DEFAULT_BACKEND

    named = DEFAULT_BACKEND in model_registry
    backend = f"and --model {DEFAULT_BACKEND}" if named else f"(not {DEFAULT_BACKEND})"
    where = " (entry point)" if native else ""
    return f"on: lm_eval finds the tofu_* tasks {backend} with no flags{where}"


def data_status(data_dir: str | None = None) -> str:
    from tofu_tasks import data

    source = data.resolve_data_dir(data_dir)
    docs = data.build_eval_docs("forget01", data_dir=data_dir)  # reads and checks every set file
    where = str(source) if source else f"hub {data.TOFU_HUB_REPO}"
    return f"{where}: forget01 task has {len(docs)} rows, files pass their checks"


def metric_model_status(kind: str, name: str | None, device: str | None) -> str:
    from harness_ext.metrics import output_quality as output_scoring

    loader = output_scoring.load_embedder if kind == "embedding" else output_scoring.load_nli
    loaded = loader(name, device)
    if isinstance(loaded, output_scoring.Unavailable):
        raise RuntimeError(loaded.detail)
    note = getattr(loaded, "note", None)
    return loaded.name + (f" — {note}" if note else "")


def gather(embedding_model: str | None = None, nli_model: str | None = None,
           device: str | None = None, data_dir: str | None = None) -> list[tuple[str, bool, str]]:  # fmt: skip
    from harness_ext.provenance import git_commit, hardware, package_versions

    rows = [
        ("python", True, sys.version.split()[0]),
        ("packages", True, ", ".join(f"{k} {v}" for k, v in package_versions().items())),
        ("git commit", True, str(git_commit())),
        ("hardware", True, str(hardware())),
        ("HF_HUB_OFFLINE", True, os.environ.get("HF_HUB_OFFLINE", "unset")),
    ]
    rows.append(_check("lm_eval autoload", autoload_status))
    rows.append(_check("TOFU data", lambda: data_status(data_dir)))
    rows.append(
        _check("embedding model", lambda: metric_model_status("embedding", embedding_model, device))
    )
    rows.append(_check("NLI model", lambda: metric_model_status("nli", nli_model, device)))
    return rows


def report(rows: list[tuple[str, bool, str]]) -> str:
    width = max(len(name) for name, _, _ in rows)
    return "\n".join(f"{'ok ' if ok else 'ERR'} {name:<{width}}  {text}" for name, ok, text in rows)
