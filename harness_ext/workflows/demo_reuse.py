"""Can this ``make demo`` reuse the committed results? Said once, up front, with the time it
will take, and again when a fine-tuned model's weights turn out to differ from the committed
run's.

A committed scoring run is reused when its settings are identical: the same model weights (the
fine-tuned models are trained again, deterministically, and come out the same only with the
same library versions on the same kind of CPU), the same task options and the same versions of
lm-unlearn, lm-eval and transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Versions that decide whether training reproduces the committed weights and whether a
# committed score counts as made with identical settings.
DECISIVE = ("lm-unlearn", "lm_eval", "transformers", "torch", "accelerate", "trl", "peft")
# The demo's models whose weights every later step depends on: name in the runs -> cache kind.
TRAINED = {"retain model": "retain", "target": "target"}


@dataclass(frozen=True)
class Committed:
    """A committed scoring run of one of the demo's fine-tuned models."""

    name: str
    weights_sha256: str | None
    versions: dict[str, str]
    cpu: str | None


def committed_runs(runs: Path) -> dict[str, Committed]:
    """The committed runs of the retain model and the target, by name."""
    found = {}
    for manifest_file in sorted(Path(runs).glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        model = manifest.get("model") or {}
        name = model.get("name")
        if name in TRAINED and not manifest.get("attack"):
            found[name] = Committed(
                name,
                (model.get("fingerprint") or {}).get("weights_sha256"),
                dict(manifest.get("versions") or {}),
                (manifest.get("hardware") or {}).get("cpu"),
            )
    return found


def version_differences(committed: dict[str, str], here: dict[str, str]) -> list[str]:
    """ "transformers 5.25.0 vs 5.24.0" for each decisive package that differs."""
    return [
        f"{name} {here.get(name, 'absent')} vs {committed[name]}"
        for name in DECISIVE
        if name in committed and committed.get(name) != here.get(name)
    ]


def outlook(runs: Path, minutes_from_nothing: float, minutes_reusing: float) -> str:
    """One paragraph: whether the committed results can be reused, why not, how long."""
    from harness_ext.provenance import cpu_model, package_versions

    found = committed_runs(runs)
    if not found:
        return (
            f"No committed results in {runs}: every model is trained and scored, about "
            f"{minutes_from_nothing:.0f} minutes on 2 CPU cores."
        )
    first = next(iter(found.values()))
    differences = version_differences(first.versions, package_versions())
    if differences:
        return (
            f"The committed results in {runs} were made with other versions "
            f"({'; '.join(differences)}, here vs there): the models will train to other "
            f"weights, so nothing committed is reused; about {minutes_from_nothing:.0f} minutes "
            f"on 2 CPU cores."
        )
    cpu = cpu_model()
    where = (
        "the same kind of CPU"
        if first.cpu in (None, cpu)
        else f"another kind of CPU ({cpu} here, {first.cpu} there)"
    )
    return (
        f"The committed results in {runs} were made with these versions on {where}: when the "
        f"models train to the same weights their scores are reused (about "
        f"{minutes_reusing:.0f} minutes, training only); when they do not, about "
        f"{minutes_from_nothing:.0f} minutes."
    )


def weights_check(runs: Path, name: str, weights_sha256: str | None) -> str | None:
    """A line when a freshly trained model differs from its committed run (None otherwise)."""
    committed = committed_runs(runs).get(name)
    if committed is None or committed.weights_sha256 in (None, weights_sha256):
        return None
    from harness_ext.provenance import cpu_model, package_versions

    why = version_differences(committed.versions, package_versions())
    if not why and committed.cpu not in (None, cpu_model()):
        why = [f"CPU {cpu_model()} vs {committed.cpu}"]
    reason = f" ({'; '.join(why)}, here vs there)" if why else ""
    return (
        f"The {name}'s weights differ from the committed run's (sha256 {str(weights_sha256)[:8]}… "
        f"vs {committed.weights_sha256[:8]}…){reason}: its scores, and those of every model "
        f"made from it, are made anew."
    )
