"""The steps every demo shares (``lm-unlearn demo``, ``lm-unlearn demo --benchmark lume``): the
clock, models cached by content, scoring as ``lm-unlearn score`` does, one run per model in the
results, and the start and end of a run (what can be reused, the base model, the leaderboard)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness_ext.assets import cache_dir, packaged_smollm2
from harness_ext.workflows import demo_reuse


class Clock:
    def __init__(self, steps: int) -> None:
        self.started = time.time()
        self.steps = steps
        self.done = 0

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.time() - self.started
        print(f"\n[{self.done}/{self.steps}] {text}   ({elapsed / 60:.1f} min so far)", flush=True)


def model_digest(path: str | Path) -> str:
    from harness_ext.provenance import model_fingerprint

    fingerprint = model_fingerprint(str(path))
    return fingerprint.get("weights_sha256") or json.dumps(fingerprint, sort_keys=True)


def cached_model(cache: Path, kind: str, config: Any, make: Callable[[Any], Path]) -> Path:
    """Train ``config`` (a FinetuneConfig or UnlearnConfig) with ``make`` into a folder named by
    the hash of its options and the input model's weights; reuse the folder when it holds a
    finished run."""
    # options left unset do not count: a new option (say, another benchmark's data folder)
    # keeps the models trained before it
    options = {name: value for name, value in config.given_options().items() if value is not None}
    for machine_specific in ("model", "output_dir", "overwrite"):
        options.pop(machine_specific, None)
    key = json.dumps(
        {"model": model_digest(config.model), "config": type(config).__name__, "options": options},
        sort_keys=True,
        default=str,
    )
    folder = cache / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    card = "run_card.json" if hasattr(config, "method") else "finetune_card.json"
    if (folder / card).is_file():
        print(f"  cached: {folder}")
        return folder
    # a fine-tuning run starts over; an unlearning run resumes a partial one itself
    make(replace(config, output_dir=str(folder), overwrite=not hasattr(config, "method")))
    return folder


def score_as(model: Path, scoring: Any, label: str = "", **references: str | Path) -> Path:
    """``lm-unlearn score`` of ``model`` with the settings ``scoring`` (a ScoreSettings), a label
    and references; returns its run folder (made, or made before with these exact settings)."""
    from harness_ext.workflows.score import score_model

    given = {name: str(path) for name, path in references.items()}
    return score_model(str(model), replace(scoring, label=label or None, **given)).run_dir


def remove_stale_runs(runs: Path, current: list[Path]) -> None:
    """Earlier scoring runs of the demo's own models (other weights, e.g. trained on another
    machine, or other settings) leave the demo's results folder: one row per model. So do the
    audit runs of models that are not the current ones."""
    import shutil

    from harness_ext.workflows.score_runs import completed_runs

    def read(run: Path) -> dict[str, Any]:
        try:
            return json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def weights(model: dict[str, Any]) -> str | None:
        return (model.get("fingerprint") or {}).get("weights_sha256")

    models = [read(run).get("model", {}) for run in current]
    names = {(model.get("name"), model.get("base_name")) for model in models}
    bases = {base for _, base in names}
    current_weights = {weights(model) for model in models}
    keep = {run.resolve() for run in current}
    for run in completed_runs(runs):
        manifest = read(run)
        model, attack = manifest.get("model", {}), manifest.get("attack")
        if attack:  # an audit's run: stale when the model it audited is not a current one
            audited = weights(attack.get("input_model") or {}) or weights(model)
            stale = model.get("base_name") in bases and audited not in current_weights
        else:
            stale = (
                run.resolve() not in keep and (model.get("name"), model.get("base_name")) in names
            )
        if stale:
            print(f"  replaced an earlier run of the same model: removed {run}")
            shutil.rmtree(run)


@dataclass
class DemoStart:
    """What every demo starts from: its model cache, runs folder, clock and base model."""

    cache: Path
    runs: Path
    clock: Clock
    base: Path


def start_demo(settings: Any) -> DemoStart:
    """The cache and runs folders, the clock (the steps counted from the methods and the audit),
    what can be reused said up front, and the base model (a DemoSettings or LumeDemoSettings)."""
    cache = Path(settings.cache or cache_dir() / "demo")
    cache.mkdir(parents=True, exist_ok=True)
    runs = Path(settings.output) / "runs"
    clock = Clock(6 + len(settings.methods) * (2 if settings.audit else 1))
    print(demo_reuse.outlook(runs, *settings.expected_minutes()), flush=True)
    clock.step(
        "base model: " + (settings.model or "the packaged SmolLM2-135M-Instruct (converted once)")
    )
    base = Path(settings.model) if settings.model else packaged_smollm2()
    return DemoStart(cache, runs, clock, base)


def check_trained_weights(runs: Path, target: Path, retain: Path) -> None:
    """Say when a fine-tuned model's weights differ from the committed run's (no reuse)."""
    for name, model in (("target", target), ("retain model", retain)):
        if note := demo_reuse.weights_check(runs, name, model_digest(model)):
            print(note, flush=True)


def finish_demo(start: DemoStart, output: Path, scored: list[Path], title: str) -> float:
    """The leaderboard of the runs ``scored`` (earlier runs of the same models removed),
    printed; returns the demo's minutes."""
    from harness_ext.workflows.leaderboard import build_leaderboard

    start.clock.step("leaderboard")
    remove_stale_runs(start.runs, scored)
    print(build_leaderboard([start.runs], Path(output), title=title).markdown)
    return (time.time() - start.clock.started) / 60


def audit_model(
    model: Path, scoring: Any, settings: Any, target_run: Path, retain_model: Path, command: str
) -> None:
    """``lm-unlearn audit`` of one unlearned model (``scoring``: its ScoreSettings, labelled with
    the method) against the target's run, with the retain model as the control of relearning,
    into ``<output>/audit/<method>``; ``command`` is recorded as the one that ran it."""
    from harness_ext.workflows.audit import run_audit
    from harness_ext.workflows.audit_settings import AuditSettings, RelearnSettings

    relearning = "relearn" in settings.audit
    run_audit(
        AuditSettings(
            model=str(model),
            scoring=scoring,
            attacks=settings.audit,
            target=str(target_run),
            control=str(retain_model) if relearning else None,
            control_label="retain model" if relearning else None,
            output=Path(settings.output) / "audit" / scoring.label.replace("+", "_"),
            relearn=RelearnSettings(learning_rate=settings.relearn_lr),
            command=command,
        )
    )
