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

from harness_ext.lm_eval_plugin import DEFAULT_BACKEND
from harness_ext.model_files import check_adapter_fits, check_safetensors
from harness_ext.provenance import (
    files_sha256,
    git_commit,
    hardware,
    model_fingerprint,
    package_versions,
    portable_paths,
    relative_stand_ins,
    setting_files,
    settings_sha256,
    write_json_atomic,
)

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
MANIFEST_FORMAT = "lm-unlearn-score/1"
PROMPT_FORMAT_CHOICES = ("chat", "plain", "llama2", "phi", "template")
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
    name: str = ""  # what the model is: its method, --label, or its folder / hub name
    base_name: str = ""  # the model it derives from (the root of its training cards)

    def __post_init__(self) -> None:
        if not self.name:
            self.name, self.base_name = describe_model(self.peft or self.pretrained)

    @property
    def label(self) -> str:
        """``name · base`` (the base left out when it is the model itself)."""
        if self.base_name and self.base_name != self.name:
            return f"{self.name} · {self.base_name}"
        return self.name


TRAINING_CARDS = {"run_card.json": "method", "finetune_card.json": None}


def _training_card(model: str) -> tuple[str, dict[str, Any]] | None:
    path = Path(model).expanduser()
    for card_name in TRAINING_CARDS:
        card = path / card_name
        if card.is_file():
            try:
                return card_name, json.loads(card.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
    return None


def checkpoint_selection(spec: ModelSpec) -> dict[str, Any] | None:
    """How ``lm-unlearn train --select`` chose the checkpoint (its run card), for the tables:
    methods compared at a matched amount of forgetting say so."""
    found = _training_card(spec.peft or spec.pretrained)
    selection = (found[1].get("selection") or None) if found else None
    if not isinstance(selection, dict):
        return None
    keys = (
        "rule",
        "metric",
        "operator",
        "target",
        "reference",
        "reached",
        "step",
        "value",
        "final_step",
    )
    out = {key: selection[key] for key in keys if key in selection}
    if out.get("reference"):  # a local path means nothing on another machine: keep its name
        out["reference"] = Path(str(out["reference"])).name
    return out


def _own_name(model: str) -> str:
    return Path(model.rstrip("/")).name or model


def describe_model(model: str) -> tuple[str, str]:
    """(name, base) of a model: e.g. ("ME+GD", "SmolLM2-135M-Instruct") for a checkpoint of
    ``lm-unlearn train``, ("fine-tuned", base) for one of ``finetune``, else its own name twice.
    The base is found by following the training cards back to a model without one."""
    found = _training_card(model)
    if found is None:
        return _own_name(model), _own_name(model)
    card_name, card = found
    name = str(card.get("method") or "unlearned") if TRAINING_CARDS[card_name] else "fine-tuned"
    parent = str((card.get("options") or {}).get("model") or "")
    for _ in range(20):  # a chain of training runs, each card naming its input model
        if not parent:
            return name, _own_name(model)
        above = _training_card(parent)
        if above is None:
            return name, _own_name(parent)
        parent = str((above[1].get("options") or {}).get("model") or "")
    return name, _own_name(parent)


@dataclass
class ScoreSettings:
    split: str = "forget01"
    backend: str = DEFAULT_BACKEND
    model_args: str = ""
    prompt_format: str | None = None  # None: chat when the tokenizer has a template, else plain
    retain_reference: str | None = None
    pre_unlearning_reference: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the model's name in tables (default: from its training card)
    base_label: str | None = None  # its base model's name in tables (default: from the cards)
    batch_size: str = "auto"
    device: str | None = None
    output: Path = Path("results/runs")
    force: bool = False
    # set by lm-unlearn audit: the attack behind this run (name, variant, settings, input model);
    # it enters the manifest, and its identity enters the settings
    attack: dict[str, Any] | None = None

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
        else:
            check_safetensors(Path(base).expanduser())
        check_adapter_fits(path, str(Path(base).expanduser()) if _is_local(base) else base)
        # the adapter's weights; its config (base path left out) counts with its setting files
        adapter_files = [
            p
            for p in path.iterdir()
            if p.name.startswith("adapter_") and p.is_file() and p.name != "adapter_config.json"
        ]
        settings = setting_files(path)  # adapter_config.json and its own tokenizer, if any
        return ModelSpec(
            source=model,
            pretrained=str(Path(base).expanduser()) if _is_local(base) else base,
            peft=str(path),
            fingerprint={
                "base": model_fingerprint(base),
                "adapter": {
                    "path": str(path.resolve()),
                    "sha256": files_sha256(adapter_files),
                    "files_sha256": settings_sha256(settings) if settings else None,
                },
            },
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ScoreError(
                f"{path} holds neither a model (config.json) nor an adapter (adapter_config.json)"
            )
        check_safetensors(path)
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


def requested_prompt_format(settings: ScoreSettings) -> str | None:
    """--prompt-format, or the task options' prompt_format / prompt_template (never both)."""
    given = {
        "--prompt-format": settings.prompt_format,
        "prompt_format in --metadata": settings.metadata.get("prompt_format"),
        "prompt_template in --metadata": "template"
        if settings.metadata.get("prompt_template")
        else None,
    }
    chosen = {where: value for where, value in given.items() if value}
    if len(set(chosen.values())) > 1:
        raise ScoreError(
            "conflicting prompt formats: "
            + ", ".join(f"{where} = {value}" for where, value in chosen.items())
        )
    return next(iter(chosen.values()), None)


def detect_prompt_format(spec: ModelSpec, requested: str | None) -> tuple[str, str]:
    """(format, why): the chat template when the tokenizer has one, else plain; or as requested."""
    from transformers import AutoTokenizer

    if requested and requested not in PROMPT_FORMAT_CHOICES:
        raise ScoreError(
            f"unknown prompt format {requested!r}; choose from {PROMPT_FORMAT_CHOICES}"
        )
    if requested == "template":
        return requested, "prompt_template in --metadata"
    if requested and requested != "chat":
        return requested, "chosen with --prompt-format"
    if not requested:
        from tofu_tasks.prompts import tofu_checkpoint_format

        tofu = tofu_checkpoint_format(spec.peft or spec.pretrained)
        if tofu:
            return tofu
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
def reference_identity(path: str | None) -> str | None:
    """What a reference is, wherever it lives (see ``ScoredReference.identity``)."""
    if not path:
        return None
    from harness_ext.metrics.references import ReferenceError
    from tofu_tasks.reference_files import load_reference

    try:
        return load_reference(path).identity
    except ReferenceError as err:
        raise ScoreError(str(err)) from err


# Task options naming local folders: where they are does not change a score; what is in them
# enters the settings through the data hash (data_dir) or the model's fingerprint (tokenizer).
LOCATION_OPTIONS = ("data_dir",)


def eval_data_sha256(settings: ScoreSettings) -> str:
    """Hash of the documents the task will score (the same function the task uses)."""
    from tofu_tasks.documents import eval_docs
    from tofu_tasks.options import TaskOptions

    options = TaskOptions.from_metadata({**settings.metadata, "forget_split": settings.split})
    from tofu_tasks import data

    return data.content_hash(eval_docs(options))


def run_task_options(
    spec: ModelSpec, settings: ScoreSettings, prompt_format: str
) -> dict[str, Any]:
    metadata = dict(settings.metadata)
    if prompt_format != "chat":
        metadata["prompt_format"] = prompt_format
    if settings.retain_reference:
        metadata["retain_reference"] = settings.retain_reference
    if settings.pre_unlearning_reference:
        metadata["pre_unlearning_reference"] = settings.pre_unlearning_reference
    return metadata


def model_arguments(spec: ModelSpec, settings: ScoreSettings) -> dict[str, Any]:
    from harness_ext.lm_eval_plugin.run import parse_model_args

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
    metadata = {k: v for k, v in settings.metadata.items() if k not in LOCATION_OPTIONS}
    versions = package_versions()
    attack = {"attack": attack_identity(settings.attack)} if settings.attack else {}
    return {
        **attack,
        "model": _identity(spec.fingerprint),
        "task": settings.task,
        "backend": settings.backend,
        "model_args": extra,
        "prompt_format": prompt_format,
        "metadata": metadata,
        "data_sha256": eval_data_sha256(settings),
        "retain_reference": reference_identity(settings.retain_reference),
        "pre_unlearning_reference": reference_identity(settings.pre_unlearning_reference),
        "versions": {name: versions.get(name) for name in KEY_PACKAGES},
    }


# Not the role: the same model scored on the same rows is one run, whatever the audit uses it for.
ATTACK_IDENTITY = ("name", "variant", "settings", "input_model")


def attack_identity(attack: dict[str, Any]) -> dict[str, Any]:
    """What an attack is (not where its files live): it enters the settings of its run."""
    kept = {k: attack.get(k) for k in ATTACK_IDENTITY}
    model = kept.get("input_model")
    if isinstance(model, dict):
        kept["input_model"] = _identity(model.get("fingerprint"))
    return kept


# The packages whose versions enter the settings: a new release may score differently.
KEY_PACKAGES = ("lm-unlearn", "lm_eval", "transformers")


def model_identity(fingerprint: Any) -> Any:
    """What a model is, wherever it lives: its fingerprint without local paths when hashed."""
    return _identity(fingerprint)


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


def slug(text: str, limit: int = 60) -> str:
    """A folder-name-safe form of a label."""
    text = text.replace(" · ", "-").replace("+", "_")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.-")[:limit] or "model"


def run_name(spec: ModelSpec, settings: ScoreSettings, key: dict[str, Any]) -> str:
    digest = settings_hash(key)
    return f"{slug(spec.label)}-{settings.split}-{digest[:12]}"


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
    if settings.label:
        spec.name = settings.label
    if settings.base_label:
        spec.base_name = settings.base_label
    prompt_format, why = detect_prompt_format(spec, requested_prompt_format(settings))
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
        stand_ins = local_stand_ins(spec, settings)
        results = _evaluate(spec, settings, prompt_format, partial, stand_ins)
        files = sorted(str(f.relative_to(partial)) for f in partial.rglob("*") if f.is_file())
        manifest = build_manifest(spec, settings, prompt_format, why, key, results, files)
        manifest["wall_seconds"] = round(time.time() - started, 2)
        write_json_atomic(partial / MANIFEST, portable_paths(manifest, stand_ins))
        _move_into_place(partial, final, settings.force)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    from harness_ext.lm_eval_plugin.results import task_metrics

    return ScoreOutcome(model, final, skipped=False, metrics=task_metrics(results, settings.task))


def local_stand_ins(spec: ModelSpec, settings: ScoreSettings) -> dict[str, str]:
    """Local paths a run's files would name -> their path relative to the results folder (the
    project's task folder -> ``tofu_tasks``), so that no file names the scoring machine's folders."""
    from harness_ext.lm_eval_plugin.autoload import project_tasks_dir
    from tofu_tasks import data

    metadata = settings.metadata
    paths = [spec.pretrained, spec.peft, spec.source, settings.retain_reference,
             settings.pre_unlearning_reference, metadata.get("data_dir"),
             metadata.get("tokenizer"), data.resolve_data_dir(metadata.get("data_dir")),
             *(v for v in model_arguments(spec, settings).values() if isinstance(v, str))]  # fmt: skip
    stand_ins = relative_stand_ins(paths, settings.output)
    tasks = Path(project_tasks_dir())
    stand_ins.update({str(tasks): tasks.name, str(tasks.resolve()): tasks.name})
    return stand_ins


def _evaluate(
    spec: ModelSpec,
    settings: ScoreSettings,
    prompt_format: str,
    folder: Path,
    stand_ins: dict[str, str],
) -> dict:
    from lm_eval.loggers import EvaluationTracker

    from harness_ext.lm_eval_plugin.run import run_tasks

    tracker = EvaluationTracker(output_path=str(folder))
    results = run_tasks(
        model_arguments(spec, settings),
        [settings.task],
        backend=settings.backend,
        metadata=run_task_options(spec, settings, prompt_format),
        apply_chat_template=prompt_format == "chat",
        batch_size=settings.batch_size,
        device=settings.device,
        evaluation_tracker=tracker,
    )
    if results is None:  # a non-zero rank under a multi-process launcher
        raise ScoreError("lm-eval returned no results")
    samples = results.pop("samples", None)
    # lm-eval names the folder and the model after `pretrained`, a path of this machine
    general = tracker.general_config_tracker
    general.model_name = portable_paths(general.model_name, stand_ins)
    general.model_name_sanitized = slug(spec.label)
    results = portable_paths(results, stand_ins)
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
        "name": f"{spec.label} · {settings.split}",
        "model": {
            "name": spec.name,
            "base_name": spec.base_name,
            "given": spec.source,
            "pretrained": spec.pretrained,
            "peft": spec.peft,
            "fingerprint": spec.fingerprint,
            **({"selection": chosen} if (chosen := checkpoint_selection(spec)) else {}),
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
            "retain_identity": key["retain_reference"],
            "pre_unlearning": settings.pre_unlearning_reference,
            "pre_unlearning_identity": key["pre_unlearning_reference"],
        },
        "task_metadata": settings.metadata,
        **({"attack": settings.attack} if settings.attack else {}),
        "settings_sha256": settings_hash(key),
        "files": files,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "wall_seconds": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rerun": rerun_command(spec, settings, prompt_format),
        "rerun_from": "the results folder holding this run folder (paths are relative to it)",
    }


def rerun_command(spec: ModelSpec, settings: ScoreSettings, prompt_format: str) -> str:
    """The command that scores the model again; run from the results folder (its paths are
    rewritten relative to it when the manifest is written)."""
    parts = ["lm-unlearn", "score", spec.source]
    if spec.peft:
        parts += ["--base", spec.pretrained]
    parts += ["--split", settings.split, "--prompt-format", prompt_format]
    if settings.label:
        parts += ["--label", settings.label]
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
    parts += ["--output", "."]
    return " ".join(_quote(p) for p in parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
