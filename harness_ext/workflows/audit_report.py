"""The audit's report: its table of forget metrics before and after each attack, with recovery
and the control's gain, as Markdown, CSV and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness_ext.workflows import robustness_table
from harness_ext.workflows.audit_scores import input_model
from harness_ext.workflows.audit_settings import (
    ATTACK_CARD,
    AUDIT_FORMAT,
    KNOWLEDGE_ATTACKS,
    AttackResult,
    AuditReport,
    AuditSettings,
)
from harness_ext.workflows.score_inputs import ModelSpec
from harness_ext.workflows.table_cells import md_text


# ---------------------------------------------------------------------- the table
def table(spec: ModelSpec, results: list[AttackResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        runs = {"before_run": result.before.run or "", "after_run": result.after.run or "",
                "target_run": (result.target.run or "") if result.target else ""}  # fmt: skip
        target = result.target.metrics if result.target else None
        control = result.control
        pair = (control.before.metrics, control.after.metrics) if control else None
        if control:
            runs["control_runs"] = f"{control.before.run} → {control.after.run}"
        rows += robustness_table.table_rows(
            spec.label, result.variant.shown, result.before.metrics, result.after.metrics,
            target, result.noise, pair, variant=result.variant.name, **runs,
        )  # fmt: skip
    return rows


def to_markdown(
    settings: AuditSettings, spec: ModelSpec, rows: list[dict], results: list[AttackResult]
) -> str:
    lines = [f"# lm-unlearn audit: {spec.label} · {settings.scoring.split}", "",
             f"Runs in `{settings.scoring.output}`; target (before unlearning): "
             f"{settings.target or 'not given (no recovery)'}.", "",
             robustness_table.markdown(rows), "", "Attacks:", ""]  # fmt: skip
    for result in results:
        v = result.variant
        what = ", ".join(f"{k} {val}" for k, val in v.settings.items())
        scored = f"; scored on {v.scored}" if v.scored else ""
        took = f" ({work_seconds(result)})"
        control = f"; control: the same on {result.control.name}" if result.control else ""
        lines.append(f"- {md_text(v.name)}: {md_text(what)}{scored}{md_text(control)}{took}")
    lines += ["", *RECOVERY_NOTE]
    if any(r.variant.attack in KNOWLEDGE_ATTACKS for r in results) and not settings.control:
        lines.append(
            "No control was given (--control: a model that never learned the forget data, such "
            "as TOFU's or MUSE's retain model): relearning can teach facts a model never knew, "
            "so its recovery alone overstates what came back."
        )
    return "\n".join(lines)


def work_seconds(result: AttackResult) -> str:
    """What the attack cost when it was made (the same when its models and runs are reused):
    building the attacked models (from their cards) and scoring them (from the runs)."""
    models = [result.model] + ([result.control.attacked] if result.control else [])
    build = 0.0
    for folder in (m for m in models if m is not None):
        card = Path(folder) / ATTACK_CARD
        if card.is_file():
            build += float(json.loads(card.read_text(encoding="utf-8")).get("build_seconds") or 0)
    runs = [result.after] + (
        [result.control.before, result.control.after] if result.control else []
    )
    scoring = sum(r.seconds for r in runs)
    return (
        f"{build:.0f} s to build, {scoring:.0f} s to score"
        if build
        else f"{scoring:.0f} s to score"
    )


RECOVERY_NOTE = (
    "gain = after − before. recovery = (after − before) / (target − before): 0 nothing came "
    "back, 1 all; N/A where target − before is within its noise (gap_noise: twice the "
    "standard deviation of that gap over 200 bootstrap draws of the scored rows).",
    "control_gain: the same attack's gain on the control (a model that never learned the "
    "forget data, such as the retain model); difference = gain − control_gain, what the "
    "attack brought back beyond what it teaches any model.",
)


def to_json(
    settings: AuditSettings,
    spec: ModelSpec,
    rows: list[dict],
    results: list[AttackResult],
    seconds: float,
) -> dict[str, Any]:
    from harness_ext.provenance import git_commit, package_versions

    attacks = [
        {"attack": r.variant.attack, "variant": r.variant.name, "settings": r.variant.settings,
         "scored": r.variant.scored or "the usual rows", "model": str(r.model) if r.model else None,
         "before": r.before.describe(), "after": r.after.describe(), "wall_seconds": r.seconds,
         "target": r.target.describe() if r.target else None, "gap_noise": r.noise or None,
         "control": r.control.describe() if r.control else None}
        for r in results
    ]  # fmt: skip
    return {"format": AUDIT_FORMAT, "model": input_model(spec, settings.model),
            "split": settings.scoring.split, "target": settings.target,
            "runs": str(settings.scoring.output), "attacks": attacks, "rows": rows,
            "command": settings.command, "versions": package_versions(),
            "git_commit": git_commit(), "wall_seconds": round(seconds, 1)}  # fmt: skip


def write_report(
    settings: AuditSettings, spec: ModelSpec, results: list[AttackResult], seconds: float
) -> AuditReport:
    from harness_ext.provenance import (
        portable_paths,
        relative_stand_ins,
        write_json_atomic,
        write_text_atomic,
    )

    rows = table(spec, results)
    markdown = to_markdown(settings, spec, rows, results)
    output = Path(settings.output)
    paths = [settings.model, spec.pretrained, spec.peft, settings.target, settings.control,
             settings.scoring.output, *(r.model for r in results),
             *(r.control.attacked for r in results if r.control)]  # fmt: skip
    payload = portable_paths(to_json(settings, spec, rows, results, seconds),
                             relative_stand_ins(paths, output))  # fmt: skip
    files = [
        write_text_atomic(output / "audit.md", markdown + "\n"),
        write_text_atomic(output / "audit.csv", robustness_table.csv(rows)),
        write_json_atomic(output / "audit.json", payload),
    ]
    return AuditReport(rows, markdown, files, results)
