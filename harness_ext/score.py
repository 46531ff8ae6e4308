"""``lm-unlearn score``: score checkpoints made anywhere on a ``tofu_*_unlearn`` task, in one command.

A model is a hub id, a local checkpoint directory or a PEFT adapter directory (its base read from
``adapter_config.json`` unless ``--base`` is given). Scoring goes through lm-eval in process, with
every lm-eval model argument passed through. Each run gets its own folder under the output
directory holding lm-eval's own results and samples files plus ``manifest.json``::

    results/runs/<model>-<split>-<settings hash>/
        manifest.json                      # what was scored, how, with what, by whom
        <model_name_sanitized>/results_<date>.json
        <model_name_sanitized>/samples_tofu_forget01_unlearn_<date>.jsonl

The folder is assembled under a hidden temporary name and renamed into place when complete, so a
run that fails or is killed leaves nothing a leaderboard reads. The settings hash covers the model
(weights hash or hub revision), the adapter, the task options and the model arguments: a model
already scored with identical settings is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.evaluate import DEFAULT_BACKEND
from harness_ext.provenance import (
    files_sha256,
    git_commit,
    hardware,
    model_fingerprint,
    package_versions,
    write_json_atomic,
)

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
MANIFEST_FORMAT = "lm-unlearn-score/1"
PROMPT_FORMATS = ("chat", "plain", "llama2", "phi")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ScoreError(ValueError):
    """Bad input to ``lm-unlearn score``: the message says what and how to fix it."""


@dataclass
class ModelSpec:
    """What lm-eval loads: ``pretrained`` (+ ``peft``), and how to recognise it again."""

    source: str
    pretrained: str
    peft: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        name = Path(self.peft or self.pretrained).name or self.pretrained
        return name


@dataclass
class ScoreSettings:
    split: str = "forget01"
    backend: str = DEFAULT_BACKEND
    model_args: str = ""
    prompt_format: str | None = None  # None: chat when the tokenizer has a template, else plain
    retain_reference: str | None = None
    pre_unlearning_reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    batch_size: str = "auto"
    device: str | None = None
    output: Path = Path("results/runs")
    force: bool = False

    @property
    def task(self) -> str:
        return f"tofu_{self.split}_unlearn"


# ---------------------------------------------------------------------- models
def _is_local(text: str) -> bool:
    return Path(text).expanduser().exists()


def _check_hub_id(text: str, what: str) -> None:
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise ScoreError(f"{what} {text!r} does not exist (neither a local folder nor a hub id)")


def resolve_model(model: str, base: str | None = None) -> ModelSpec:
    """A hub id, a checkpoint folder, or a PEFT adapter folder (base from its config or ``base``)."""
    path = Path(model).expanduser()
    if path.is_dir() and (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = base or config.get("base_model_name_or_path")
        if not base:
            raise ScoreError(f"{path}/adapter_config.json names no base model; pass --base")
        if not _is_local(base):
            _check_hub_id(base, f"the base model of adapter {path}:")
        adapter_files = [p for p in path.iterdir() if p.name.startswith("adapter_") and p.is_file()]
        return ModelSpec(
            source=model,
            pretrained=str(Path(base).expanduser()) if _is_local(base) else base,
            peft=str(path),
            fingerprint={
                "base": model_fingerprint(base),
                "adapter": {"path": str(path.resolve()), "sha256": files_sha256(adapter_files)},
            },
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ScoreError(
                f"{path} holds neither a model (config.json) nor an adapter (adapter_config.json)"
            )
        return ModelSpec(source=model, pretrained=str(path), fingerprint=model_fingerprint(model))
    if path.exists():
        raise ScoreError(f"{model} is a file; give the model's folder or hub id")
    _check_hub_id(model, "model")
    return ModelSpec(source=model, pretrained=model, fingerprint=model_fingerprint(model))


def find_models(folder: Path) -> list[str]:
    """Checkpoints (config.json) and adapters (adapter_config.json) directly inside ``folder``."""
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (
            (child / "config.json").is_file() or (child / "adapter_config.json").is_file()
        ):
            found.append(str(child))
    return found


def expand_models(models: list[str], list_file: str | None = None) -> list[str]:
    """Models from the command line and a list file; a folder of checkpoints gives each one."""
    wanted = list(models)
    if list_file:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        wanted += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    expanded = []
    for model in wanted:
        path = Path(model).expanduser()
        is_model = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
        if path.is_dir() and not is_model:
            inside = find_models(path)
            if not inside:
                raise ScoreError(f"{path} holds no model or adapter folders")
            expanded += inside
        else:
            expanded.append(model)
    if not expanded:
        raise ScoreError("no model given: pass MODEL(s) or --list FILE")
    return expanded


# ---------------------------------------------------------------------- prompt format
def tokenizer_source(spec: ModelSpec) -> str:
    if spec.peft and any(
        (Path(spec.peft) / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")
    ):
        return spec.peft
    return spec.pretrained


def detect_prompt_format(spec: ModelSpec, requested: str | None) -> tuple[str, str]:
    """(format, why): the chat template when the tokenizer has one, else plain; or as requested."""
    from transformers import AutoTokenizer

    if requested and requested not in PROMPT_FORMATS:
        raise ScoreError(f"unknown prompt format {requested!r}; choose from {PROMPT_FORMATS}")
    if requested and requested != "chat":
        return requested, "chosen with --prompt-format"
    source = tokenizer_source(spec)
    tokenizer = AutoTokenizer.from_pretrained(source)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "chat" and not has_template:
        raise ScoreError(
            f"--prompt-format chat: the tokenizer of {source} has no chat template; "
            f"use plain, llama2 or phi"
        )
    if has_template:
        return "chat", f"the tokenizer of {source} has a chat template"
    return "plain", f"the tokenizer of {source} has no chat template"


# ---------------------------------------------------------------------- settings and runs
def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    if p.is_dir():
        return files_sha256([f for f in p.rglob("*") if f.is_file()])
    raise ScoreError(f"reference {path} does not exist")


def task_metadata(spec: ModelSpec, settings: ScoreSettings, prompt_format: str) -> dict[str, Any]:
    metadata = dict(settings.metadata)
    if prompt_format != "chat":
        metadata["prompt_format"] = prompt_format
    if settings.retain_reference:
        metadata["retain_reference"] = settings.retain_reference
    if settings.pre_unlearning_reference:
        metadata["pre_unlearning_reference"] = settings.pre_unlearning_reference
    return metadata


def model_arguments(spec: ModelSpec, settings: ScoreSettings) -> dict[str, Any]:
    from harness_ext.evaluate import parse_model_args

    args = parse_model_args(settings.model_args)
    clash = {"pretrained", "peft"} & set(args)
    if clash:
        raise ScoreError(
            f"--model-args must not set {', '.join(sorted(clash))}: give the model as MODEL "
            f"(and the adapter's base with --base)"
        )
    args = {"pretrained": spec.pretrained, **args}
    if spec.peft:
        args["peft"] = spec.peft
    return args


def settings_key(spec: ModelSpec, settings: ScoreSettings, prompt_format: str) -> dict[str, Any]:
    """Everything that changes the numbers; its hash names the run."""
    extra = {
        k: v for k, v in model_arguments(spec, settings).items() if k not in ("pretrained", "peft")
    }
    return {
        "model": _identity(spec.fingerprint),
        "task": settings.task,
        "backend": settings.backend,
        "model_args": extra,
        "prompt_format": prompt_format,
        "metadata": settings.metadata,
        "retain_reference": _file_digest(settings.retain_reference),
        "pre_unlearning_reference": _file_digest(settings.pre_unlearning_reference),
    }


def _identity(fingerprint: Any) -> Any:
    """The fingerprint without local paths when weights are hashed: a copy is the same model."""
    if not isinstance(fingerprint, dict):
        return fingerprint
    hashed = any(k.endswith("sha256") and v for k, v in fingerprint.items())
    return {k: _identity(v) for k, v in fingerprint.items() if not (hashed and k == "path")}


def settings_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def find_scored(output: Path, digest: str) -> Path | None:
    """A finished run with these exact settings, under any folder name."""
    for run_dir in completed_runs(output):
        try:
            manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("settings_sha256") == digest:
            return run_dir
    return None


def run_name(spec: ModelSpec, settings: ScoreSettings, key: dict[str, Any]) -> str:
    digest = settings_hash(key)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.label).strip("_")[:60] or "model"
    return f"{slug}-{settings.split}-{digest[:12]}"


def completed_runs(output: Path) -> list[Path]:
    """Run folders whose manifest exists (finished runs); partial folders are never listed."""
    if not output.is_dir():
        return []
    return sorted(
        p.parent for p in output.glob(f"*/{MANIFEST}") if not p.parent.name.startswith(".")
    )


@dataclass
class ScoreOutcome:
    model: str
    run_dir: Path
    skipped: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def score_model(model: str, settings: ScoreSettings, base: str | None = None) -> ScoreOutcome:
    """Score one model; returns where its run lives (skips it when already scored)."""
    spec = resolve_model(model, base)
    prompt_format, why = detect_prompt_format(spec, settings.prompt_format)
    key = settings_key(spec, settings, prompt_format)
    name = run_name(spec, settings, key)
    final = settings.output / name
    scored = find_scored(settings.output, settings_hash(key))
    if scored and not settings.force:
        print(f"{model}: already scored with identical settings in {scored}; skipped")
        return ScoreOutcome(model, scored, skipped=True)
    print(f"{model}: scoring on {settings.task}, prompt format {prompt_format} ({why})")
    settings.output.mkdir(parents=True, exist_ok=True)
    partial = settings.output / f"{PARTIAL_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        started = time.time()
        results = _evaluate(spec, settings, prompt_format, partial)
        files = sorted(str(f.relative_to(partial)) for f in partial.rglob("*") if f.is_file())
        manifest = build_manifest(spec, settings, prompt_format, why, key, results, files)
        manifest["wall_seconds"] = round(time.time() - started, 2)
        write_json_atomic(partial / MANIFEST, manifest)
        _move_into_place(partial, final, settings.force)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    from harness_ext.runs import task_metrics

    return ScoreOutcome(model, final, skipped=False, metrics=task_metrics(results, settings.task))


def _evaluate(spec: ModelSpec, settings: ScoreSettings, prompt_format: str, folder: Path) -> dict:
    from lm_eval.loggers import EvaluationTracker

    from harness_ext.evaluate import run_tasks

    tracker = EvaluationTracker(output_path=str(folder))
    results = run_tasks(
        model_arguments(spec, settings),
        [settings.task],
        backend=settings.backend,
        metadata=task_metadata(spec, settings, prompt_format),
        apply_chat_template=prompt_format == "chat",
        batch_size=settings.batch_size,
        device=settings.device,
        evaluation_tracker=tracker,
    )
    if results is None:  # a non-zero rank under a multi-process launcher
        raise ScoreError("lm-eval returned no results")
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        if samples and task_name in samples:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return results


def _move_into_place(partial: Path, final: Path, force: bool) -> None:
    if force and final.exists():
        retired = final.with_name(f"{PARTIAL_PREFIX}{final.name}-old-{os.getpid()}")
        os.replace(final, retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        os.rename(partial, final)  # atomic: the leaderboard sees all of the run or none of it
    except OSError:
        if (final / MANIFEST).is_file():  # another process scored the same settings meanwhile
            print(f"{final} was completed by another run meanwhile; kept that one")
            return
        raise


def build_manifest(spec, settings, prompt_format, why, key, results, files) -> dict[str, Any]:
    task = settings.task
    tofu = results["configs"][task].get("metadata", {}).get("tofu", {})
    return {
        "format": MANIFEST_FORMAT,
        "name": spec.label,
        "model": {
            "given": spec.source,
            "pretrained": spec.pretrained,
            "peft": spec.peft,
            "fingerprint": spec.fingerprint,
        },
        "task": task,
        "task_version": results.get("versions", {}).get(task),
        "backend": settings.backend,
        "model_args": key["model_args"],
        "prompt_format": {"name": prompt_format, "why": why},
        "data": {
            "source": tofu.get("data_source"),
            "sha256": tofu.get("data_sha256"),
            "rows_per_set": tofu.get("rows_per_set"),
        },
        "generation": tofu.get("generation"),
        "metric_variants": tofu.get("metric_variants"),
        "metric_models": tofu.get("metric_models"),
        "references": {
            "retain": settings.retain_reference,
            "retain_sha256": key["retain_reference"],
            "pre_unlearning": settings.pre_unlearning_reference,
            "pre_unlearning_sha256": key["pre_unlearning_reference"],
        },
        "task_metadata": settings.metadata,
        "settings_sha256": settings_hash(key),
        "files": files,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_seconds": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rerun": rerun_command(spec, settings, prompt_format),
    }


def rerun_command(spec: ModelSpec, settings: ScoreSettings, prompt_format: str) -> str:
    parts = ["lm-unlearn", "score", spec.source]
    if spec.peft:
        parts += ["--base", spec.pretrained]
    parts += ["--split", settings.split, "--prompt-format", prompt_format]
    if settings.model_args:
        parts += ["--model-args", settings.model_args]
    if settings.backend != DEFAULT_BACKEND:
        parts += ["--backend", settings.backend]
    if settings.metadata:
        parts += ["--metadata", json.dumps(settings.metadata, sort_keys=True)]
    if settings.retain_reference:
        parts += ["--reference", settings.retain_reference]
    if settings.pre_unlearning_reference:
        parts += ["--pre-unlearning-reference", settings.pre_unlearning_reference]
    return " ".join(_quote(p) for p in parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
