"""What identifies a scoring run: the key of every setting that can change a score, its hash,
the run's name, and finding runs already made with the same settings."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from harness_ext.provenance import (
    package_versions,
)
from harness_ext.workflows.score_inputs import MANIFEST, ModelSpec, ScoreError, ScoreSettings


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
LOCATION_OPTIONS = ("data_dir", "mmlu_data_dir")


def eval_data_sha256(settings: ScoreSettings) -> str:
    """Hash of the documents the task will score (the same function the task uses)."""
    from harness_ext.provenance import content_hash

    return content_hash(settings.eval_docs())


def run_task_options(
    spec: ModelSpec, settings: ScoreSettings, prompt_format: str
) -> dict[str, Any]:
    metadata = dict(settings.metadata)
    if prompt_format != "chat" and not settings.benchmark.own_prompt_format:
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
