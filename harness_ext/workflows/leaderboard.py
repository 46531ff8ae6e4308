"""``lm-unlearn leaderboard``: one comparable table from many scoring runs.

Reads every lm-eval results file under the given folders: runs of ``lm-unlearn score`` (with their
``manifest.json``) and results of plain ``lm_eval --tasks tofu_forget01_unlearn --output_path ...``.
Hidden folders (a scoring run in progress lives in ``.partial-*``) are never read.

Runs are ranked together only when they are comparable: same task and task version, same scored
rows (data hash and rows per set), same metric variants and metric models, same forget-quality
reference. The largest comparable group of each task forms its table; every other run is listed
apart with the reason it cannot be ranked with that table.

Writes ``LEADERBOARD.md``, ``leaderboard.csv`` and a self-contained ``leaderboard.html`` (sortable
table, a scatter of model utility against forget efficacy, per-metric bars).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_ext.metrics.glossary import definition, label
from harness_ext.metrics.ideals import parse_ranking
from harness_ext.workflows import ranking, robustness
from harness_ext.workflows.score import MANIFEST
from harness_ext.workflows.table_cells import cell, csv_text, md_text
from tofu_tasks.eval_sets import CLOSER_LOOK_SET_METRICS, EVAL_SETS, FORGET, NEIGHBOR

# The set and metric names come from their one definition (tofu_tasks.eval_sets).
SETS = tuple(s.name for s in (*EVAL_SETS, NEIGHBOR))
PER_SET = CLOSER_LOOK_SET_METRICS
AGGREGATES = ("forget_quality", "forget_efficacy", "model_utility", "tofu_model_utility")
SUMMARY_COLUMNS = (
    *AGGREGATES,
    *(f"{FORGET.name}_{m}" for m in ("rougeL_recall", "prob", "truth_ratio")),
    *(f"{name}_rougeL_recall" for name in SETS if name != FORGET.name),
    "privleak",
    "forget_extraction_strength",
)
# Membership-inference and memorisation keys (every run reports them; most read "N/A" without a
# holdout): a column only when some run has a number.
PRIVACY_PREFIXES = ("mia_", "privleak", "forget_extraction_strength", "forget_exact_memorization")


@dataclass
class RunRecord:
    label: str
    task: str
    results_file: Path
    run_dir: Path
    manifest: dict[str, Any] | None
    metrics: dict[str, Any]
    comparability: dict[str, Any]
    prompt_format: str | None
    date: float
    fq_reference: str | None = None  # identity of the retain reference of forget quality
    pre_unlearning_reference: str | None = None  # identity of the pre-unlearning reference
    role: str = ""  # "retain reference" / "pre-unlearning reference" when other runs use it
    fq_reference_name: str = ""
    retain_values: dict[str, Any] = field(default_factory=dict)  # the retain model's, same rows
    group: int = 0
    note: str = ""
    differs: tuple[str, ...] = ()
    rank: int | None = None

    def number(self, metric: str) -> float | None:
        value = self.metrics.get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return None if math.isnan(value) else float(value)


@dataclass
class Leaderboard:
    records: list[RunRecord]
    markdown: str
    files: list[Path] = field(default_factory=list)
    unread: list[tuple[Path, str]] = field(default_factory=list)  # runs left out, and why


# ---------------------------------------------------------------------- reading runs
def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def result_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(results file, the root it was found under); hidden and partial folders skipped."""
    found = []
    for root in paths:
        root = Path(root)
        if root.is_file():
            found.append((root, root.parent))
        elif root.is_dir():
            found += [
                (f, root) for f in sorted(root.rglob("results_*.json")) if not _hidden(f, root)
            ]
        else:
            raise FileNotFoundError(f"{root} does not exist")
    return found


def _manifest_for(results_file: Path, root: Path) -> tuple[Path, dict[str, Any] | None]:
    folder = results_file.parent
    while True:
        candidate = folder / MANIFEST
        if candidate.is_file():
            return folder, _read_json_object(candidate, f"its {candidate}")
        if folder == root or folder.parent == folder or root not in folder.parents:
            return results_file.parent, None
        folder = folder.parent


def _comparability(task: str, results: dict[str, Any]) -> dict[str, Any]:
    tofu = results.get("configs", {}).get(task, {}).get("metadata", {}).get("tofu", {}) or {}
    models = dict(tofu.get("metric_models") or {})
    models.pop("token_entropy", None)  # each model's own tokenizer, by definition
    models.pop("notes", None)
    options = tofu.get("options") or {}
    return {
        "task": task,
        "task_version": results.get("versions", {}).get(task),
        "data_sha256": tofu.get("data_sha256"),
        "rows_per_set": tofu.get("rows_per_set"),
        "generation_max_length": options.get("generation_max_length"),
        "metric_variants": tofu.get("metric_variants"),
        "metric_models": models or None,
    }


def _reference_identity(reference: dict[str, Any] | None) -> str | None:
    """What a reference is, wherever its file lives: the scoring run it came from, or its rows."""
    if not reference:
        return None
    if reference.get("identity"):
        return str(reference["identity"])
    # written before references carried their identity: everything but where the file was
    return json.dumps({k: v for k, v in reference.items() if k != "source"}, sort_keys=True)


def _reference_names(records: list[RunRecord], tofu_by_record: dict[int, dict]) -> dict[str, str]:
    """Reference identity -> a short name for it (the run's label when it is one of the runs)."""
    names: dict[str, str] = {}
    for record in records:
        tofu = tofu_by_record[id(record)]
        for key in ("forget_quality_reference", "pre_unlearning_reference"):
            reference = tofu.get(key) or {}
            identity = _reference_identity(reference)
            if identity:
                names.setdefault(identity, str(reference.get("name") or reference.get("kind")))
    for record in records:
        identity = _run_identity(record)
        if identity in names:
            names[identity] = record.label
    return names


def _run_identity(record: RunRecord) -> str | None:
    settings = (record.manifest or {}).get("settings_sha256")
    return f"run:{settings}" if settings else None


def _label(
    task: str, results: dict[str, Any], manifest: dict[str, Any] | None, results_file: Path
) -> str:
    """What the run is: "ME+GD · SmolLM2-135M-Instruct · forget01" (method or model, base
    model, split); for plain lm-eval results the model's folder or hub name and the split."""
    split = task.removeprefix("tofu_").removesuffix("_unlearn")
    if manifest and manifest.get("name"):
        name = str(manifest["name"])
        return name if name.endswith(f" · {split}") else f"{name} · {split}"
    args = results.get("config", {}).get("model_args") or {}
    if isinstance(args, str):
        from harness_ext.lm_eval_plugin.run import parse_model_args

        args = parse_model_args(args)
    name = str(args.get("peft") or args.get("pretrained") or results.get("model_name") or "")
    return f"{Path(name.rstrip('/')).name or results_file.parent.name} · {split}"


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what} is not readable JSON ({err})") from err
    if not isinstance(content, dict):
        raise ValueError(f"{what} holds a JSON {type(content).__name__}, not an object")
    return content


def read_runs(paths: list[Path], unread: list[tuple[Path, str]] | None = None) -> list[RunRecord]:
    """Every scored ``tofu_*_unlearn`` task under ``paths``, one record per (results file, task).

    A run whose results file or manifest cannot be read is left out and listed in ``unread``
    with the file and the reason; the other runs are read as usual.
    """
    from harness_ext.lm_eval_plugin.results import task_metrics

    records = []
    unread = [] if unread is None else unread
    tofu_by_record: dict[int, dict[str, Any]] = {}
    for results_file, root in result_files(paths):
        try:
            results = _read_json_object(results_file, "the results file")
            if not isinstance(results.get("results", {}), dict):
                raise ValueError("the results file has no 'results' object")
            run_dir, manifest = _manifest_for(results_file, root)
        except ValueError as err:
            unread.append((results_file, str(err)))
            print(f"not read: {results_file}: {err}")
            continue
        for task in results.get("results", {}):
            config = results.get("configs", {}).get(task, {})
            if "tofu" not in (config.get("metadata") or {}):
                continue
            tofu = config["metadata"]["tofu"]
            record = RunRecord(
                label=_label(task, results, manifest, results_file),
                task=task,
                results_file=results_file,
                run_dir=run_dir,
                manifest=manifest,
                metrics=_with_general_ability(task, task_metrics(results, task), results),
                comparability=_comparability(task, results),
                fq_reference=_reference_identity(tofu.get("forget_quality_reference")),
                pre_unlearning_reference=_reference_identity(tofu.get("pre_unlearning_reference")),
                prompt_format=tofu.get("prompt_format"),
                date=float(results.get("date") or results_file.stat().st_mtime),
                retain_values=dict(tofu.get("retain_values") or {}),
            )
            records.append(record)
            tofu_by_record[id(record)] = tofu
    records = _unique_labels(_newest_per_setting(records))
    _mark_references(records, _reference_names(records, tofu_by_record))
    return records


def _mark_references(records: list[RunRecord], names: dict[str, str]) -> None:
    """Runs that other runs used as references say so; the retain reference's forget quality is
    its own truth ratios against themselves (1.0) and its privleak 0 (its AUC against itself),
    which is what the others are measured by."""
    retain = {r.fq_reference for r in records if r.fq_reference}
    pre_unlearning = {r.pre_unlearning_reference for r in records if r.pre_unlearning_reference}
    for record in records:
        identity = _run_identity(record)
        roles = []
        if identity in retain:
            roles.append("retain reference")
            if record.number("forget_quality") is None:
                record.metrics["forget_quality"] = _forget_quality_of_itself(record)
                record.fq_reference = identity
            if record.number("privleak") is None and record.number("mia_min_k_auc") is not None:
                record.metrics["privleak"] = 0.0  # its own AUC against itself, by definition
        if identity in pre_unlearning:
            roles.append("pre-unlearning reference")
        record.role = " and ".join(roles)
    for record in records:
        record.fq_reference_name = names.get(record.fq_reference or "", "")


def _forget_quality_of_itself(record: RunRecord) -> float | str:
    from harness_ext.metrics.references import ReferenceError
    from harness_ext.metrics.tofu import forget_quality
    from tofu_tasks.reference_files import load_reference

    try:
        ratios = [ratio for _, _, ratio in load_reference(record.results_file).forget_ratios]
    except (ReferenceError, OSError) as err:
        return f"N/A ({err})"
    return forget_quality(ratios, ratios) if ratios else "N/A (no forget rows)"


def _with_general_ability(task: str, metrics: dict[str, Any], results: dict) -> dict[str, Any]:
    """A realworld_unlearn run scored together with realworld_general also reports the paper's
    model utility over both (``model_utility_with_general``)."""
    from tofu_tasks import aggregations

    general = aggregations.general_ability(results.get("results", {}))
    if task != "realworld_unlearn" or not general:
        return metrics
    neighbor = {
        m.removeprefix("neighbor_"): v for m, v in metrics.items() if m.startswith("neighbor_")
    }
    return {
        **metrics,
        **general,
        "model_utility_with_general": aggregations.realworld_utility_with_general(
            neighbor, general
        ),
    }


def _newest_per_setting(records: list[RunRecord]) -> list[RunRecord]:
    """A model scored again with identical settings (``--force``) counts once: the newest run."""
    newest: dict[tuple, RunRecord] = {}
    for record in records:
        settings = (record.manifest or {}).get("settings_sha256") or str(record.results_file)
        key = (settings, record.task)
        if key not in newest or record.date > newest[key].date:
            newest[key] = record
    return list(newest.values())


def _unique_labels(records: list[RunRecord]) -> list[RunRecord]:
    by_label: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        by_label[(record.task, record.label)].append(record)
    for same in by_label.values():
        if len(same) > 1:
            for record in same:
                record.label = f"{record.label} ({record.run_dir.name})"
    return records


# ---------------------------------------------------------------------- grouping and ranking
def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    if isinstance(value, str) and len(value) == 64:
        return value[:10]  # a sha256
    return text if len(text) <= 80 else text[:77] + "..."


def difference(record: dict[str, Any], main: dict[str, Any]) -> str:
    parts = []
    for name, value in record.items():
        if value != main.get(name):
            parts.append(
                f"{name.replace('_', ' ')} {_short(value)} (table: {_short(main.get(name))})"
            )
    return "; ".join(parts)


def rankable_metrics() -> set[str]:
    """Every metric the tasks report, and the real-world utility the leaderboard adds."""
    from tofu_tasks.metric_list import known_metrics

    return {*known_metrics(), *known_metrics("realworld"), "model_utility_with_general"}


def check_rank_metric(rank_by: str | None) -> None:
    if rank_by is None:
        return
    metric, _ = parse_ranking(rank_by)
    if metric not in rankable_metrics():
        raise ValueError(
            f"unknown metric {metric!r} for --rank-by; known: {', '.join(sorted(rankable_metrics()))} "
            f"(closest:METRIC ranks by closeness to the retain model's value)"
        )


@dataclass
class Table:
    """One task's table: ranked runs then references, runs kept apart, and the ranking."""

    main: list[RunRecord]
    apart: list[RunRecord]
    ranking: str | None
    matched: bool = False  # every run stopped at the retain model's forgetting


def group_and_rank(records: list[RunRecord], rank_by: str | None = None) -> dict[str, Table]:
    """Per task: the ranked runs, the runs kept apart, and what ranks them."""
    check_rank_metric(rank_by)
    tables = {}
    for task in sorted({r.task for r in records}):
        runs = [r for r in records if r.task == task]
        groups: dict[str, list[RunRecord]] = defaultdict(list)
        for record in runs:
            groups[json.dumps(record.comparability, sort_keys=True, default=str)].append(record)
        ordered = sorted(groups.values(), key=lambda g: (-len(g), -max(r.date for r in g)))
        main = ordered[0]
        apart = [r for g in ordered[1:] for r in g]
        for number, members in enumerate(ordered):
            for record in members:
                record.group = number
        for record in apart:
            record.note = "not comparable: " + difference(
                record.comparability, main[0].comparability
            )
        # references (the retain model, the model before unlearning) are shown, not ranked
        ranked = [r for r in main if not r.role] or main
        references = sorted((r for r in main if r not in ranked), key=lambda r: r.label)
        matched = ranking.matched_forgetting([selection_of(r) for r in ranked])
        metric = rank_by or ranking.default_ranking(ranked, matched)
        if metric:
            ranking.check_computable(ranked, metric, main)
            ranked = ranking.order(ranked, metric, main)
        else:
            ranked.sort(key=lambda r: r.label)
        for position, record in enumerate(ranked, 1):
            record.rank = position
        tables[task] = Table(ranked + references, apart, metric, matched)
    return tables


# ---------------------------------------------------------------------- formatting
def _link(record: RunRecord, output: Path) -> str:
    """A relative link to the run's results file: "./" first and every path segment
    percent-encoded, so that no run or folder name can make it a scheme (``javascript:``), an
    absolute address or Markdown/HTML syntax."""
    from urllib.parse import quote

    relative = Path(os.path.relpath(record.results_file, output)).as_posix()
    return "./" + "/".join(quote(part, safe="") for part in relative.split("/"))


SIGNS = {"<=": "≤", ">=": "≥"}


def selection_of(record: RunRecord) -> dict[str, Any] | None:
    """How the run's checkpoint was chosen during training (``train --select``), if it was."""
    chosen = ((record.manifest or {}).get("model") or {}).get("selection")
    return chosen if isinstance(chosen, dict) and chosen.get("metric") else None


def checkpoint_cell(record: RunRecord) -> str:
    """e.g. "step 6: 0.3050 ≤ 0.3241", or "not reached (≤ 0.3241): 0.4100 at step 20"."""
    chosen = selection_of(record)
    if chosen is None:
        return ""
    value, step = cell(chosen.get("value")), chosen.get("step")
    if chosen.get("target") is None:  # best:METRIC, closest:METRIC
        if chosen.get("ideal") == "retain" and chosen.get("ideal_value") is not None:
            return f"step {step}: {value}, closest to {cell(chosen['ideal_value'])}"
        return f"step {step}: best {value}"
    operator = SIGNS.get(chosen.get("operator", ""), chosen.get("operator", ""))
    target = f"{operator} {cell(chosen.get('target'))}"
    if chosen.get("reached"):
        return f"step {step}: {value} {target}"
    return f"not reached ({target}): {value} at step {step}"


def selection_sentence(records: list[RunRecord], ranked_by: str | None = None) -> str:
    """Says when runs were stopped at a matched amount of forgetting (one rule for all), and
    that the table then ranks them by utility."""
    chosen = [c for c in map(selection_of, records) if c]
    rules = {
        (c.get("metric"), c.get("operator"), c.get("target"), c.get("reference")) for c in chosen
    }
    if not chosen or len(rules) != 1:
        return (
            f"{len(chosen)} runs were stopped by a selection rule (checkpoint column)."
            if chosen
            else ""
        )
    metric, operator, target, reference = rules.pop()
    if target is None:
        closest = chosen[0].get("ideal") == "retain" and chosen[0].get("ideal_value") is not None
        if closest:
            value = cell(chosen[0]["ideal_value"], metric)
            return (
                f"Each unlearned run kept its checkpoint with {metric} closest to {value}, the "
                f"retain model's value (checkpoint column)."
            )
        return f"Each unlearned run kept its best {metric} checkpoint (checkpoint column)."
    missed = sum(not c.get("reached") for c in chosen)
    whose = f", the retain model's own value ({reference})" if reference else ""
    sentence = (
        f"Compared at matched forgetting: each unlearned run stopped at the first checkpoint "
        f"with {metric} {SIGNS.get(operator, operator)} {cell(target)}{whose}; the checkpoint "
        f"column gives the step."
    )
    if missed:
        sentence += f" {missed} of {len(chosen)} never reached it: their final model is shown."
    if reference and ranked_by in ranking.UTILITY_PREFERENCE:
        sentence += (
            f" At equal forgetting the runs are ranked by utility ({label(ranked_by)}), so a "
            f"method cannot climb by forgetting less; forget quality is a column."
        )
    return sentence


def _rank_cell(record: RunRecord) -> str:
    return str(record.rank) if record.rank is not None else "ref"


def _name_cell(record: RunRecord) -> str:
    return f"{record.label} ({record.role})" if record.role else record.label


def summary_columns(records: list[RunRecord]) -> tuple[list[str], dict[str, list[str]]]:
    """(the summary columns some run has a number in, {reason: columns N/A in every run})."""
    present = set(_metric_columns(records))
    shown, missing = [], defaultdict(list)
    for column in SUMMARY_COLUMNS:
        if column not in present and not any(column in r.metrics for r in records):
            continue
        if any(r.number(column) is not None for r in records):
            shown.append(column)
        else:
            missing[_why_missing(records, column)].append(column)
    return shown, dict(missing)


def _reason(text: str) -> str:
    return text.removeprefix("N/A (").removesuffix(")") if text.startswith("N/A (") else text


def _why_missing(records: list[RunRecord], column: str) -> str:
    """Why a column is N/A: its reason, and, for an aggregate that misses components, why
    those are missing ("missing forget_entailment: no NLI model; pass nli_model")."""
    record = next((r for r in records if isinstance(r.metrics.get(column), str)), None)
    if record is None:
        return "not reported"
    reason = _reason(str(record.metrics[column]))
    if not reason.startswith("missing "):
        return reason
    causes = []
    for key, value in record.metrics.items():
        if key == column or not isinstance(value, str) or not value.startswith("N/A"):
            continue
        named = key in reason or any(
            key == f"{s}_{m}" and m in reason and s in reason for s in SETS for m in PER_SET
        )
        if named and _reason(value) not in causes and not _reason(value).startswith("missing"):
            causes.append(_reason(value))
    return f"{reason}: {'; '.join(causes)}" if causes else reason


def rows_text(rows_per_set: dict[str, int] | None) -> str:
    """ "forget 40, retain 40, real_authors 40, ..." in the sets' order."""
    rows = rows_per_set or {}
    ordered = [s for s in (*SETS, "holdout") if s in rows] + sorted(set(rows) - {*SETS, "holdout"})
    return ", ".join(f"{name} {rows[name]}" for name in ordered) or "none"


def ranking_sentence(table: Table) -> str:
    """How the table is ranked, and what the best value of that metric is."""
    ranked = sum(r.rank is not None for r in table.main)
    references = len(table.main) - ranked
    by = "name"
    if table.ranking:
        metric, _ = parse_ranking(table.ranking)
        closest = "closeness to the retain model's " if table.ranking.startswith("closest:") else ""
        by = f"{closest}{label(metric)}{ranking.describe(table.ranking, table.main)}"
    text = f"{ranked} comparable runs ranked by {by}"
    if references:
        text += f"; {references} references below them, not ranked"
    return text + "."


def glossary(columns: list[str], records: list[RunRecord]) -> list[tuple[str, str, str, str]]:
    """Per shown column: (name, key, what it measures, its best value)."""
    from harness_ext.metrics.ideals import ideal_of

    entries = []
    for column in columns:
        value = ranking.retain_value(records[0], column, records) if records else None
        entries.append(
            (label(column), column, definition(column), ideal_of(column).describe(value))
        )
    return entries


def numbered_columns(records: list[RunRecord]) -> tuple[list[str], dict[str, list[str]]]:
    """(every metric column some run has a number in, {reason: the columns N/A in all})."""
    shown, missing = [], defaultdict(list)
    for column in _metric_columns(records):
        if any(r.number(column) is not None for r in records):
            shown.append(column)
            continue
        if any(isinstance(r.metrics.get(column), str) for r in records):
            missing[_why_missing(records, column)].append(column)
    return shown, dict(missing)


def to_markdown(tables: dict[str, Table], output: Path, title: str) -> str:
    lines = [f"# {title}", ""]
    for task, table in tables.items():
        main, apart = table.main, table.apart
        columns, missing = summary_columns(main)
        comparability = main[0].comparability
        lines += [f"## {task}", "", md_text(ranking_sentence(table))]
        lines.append(
            f"Rows per set: {md_text(rows_text(comparability['rows_per_set']))}; data "
            f"{_short(comparability['data_sha256'])}."
        )
        references = sorted({r.fq_reference_name for r in main if r.fq_reference_name})
        if references:
            names = "; ".join(md_text(name) for name in references)
            lines.append(f"Forget quality against the retain reference: {names}.")
        if sentence := selection_sentence(main, table.ranking):
            lines.append(md_text(sentence))
        selected = any(selection_of(r) for r in main)
        header = [label(c) for c in columns]
        lines += [
            "",
            "| # | run | prompt | " + "checkpoint | " * selected + " | ".join(header) + " |",
        ]
        lines.append("|---" * (len(columns) + 3 + selected) + "|")
        for r in main:
            cells = [checkpoint_cell(r)] * selected + [cell(r.metrics.get(c), c) for c in columns]
            lines.append(
                f"| {_rank_cell(r)} | [{md_text(_name_cell(r))}]({_link(r, output)}) | "
                f"{md_text(r.prompt_format)} | " + " | ".join(md_text(c) for c in cells) + " |"
            )
        lines.append("")
        for name, key, meaning, best in glossary(columns, main):
            lines.append(f"- {md_text(name)} (`{key}`): {md_text(meaning)}; {md_text(best)}.")
        for reason, names in missing.items():
            shown = ", ".join(f"{md_text(label(n))} (`{n}`)" for n in names)
            lines.append(f"- Not shown, N/A in every run: {shown}: {md_text(reason)}.")
        if apart:
            lines += ["", "Kept apart (not comparable with the table above):", ""]
            for r in apart:
                note = md_text(r.note.removeprefix("not comparable: "))
                lines.append(f"- [{md_text(r.label)}]({_link(r, output)}): {note}")
        lines.append("")
    if not tables:
        lines.append("No tofu_*_unlearn results found.")
    return "\n".join(lines)


def unread_markdown(unread: list[tuple[Path, str]], output: Path) -> str:
    if not unread:
        return ""
    lines = ["## Not read", ""]
    for path, reason in unread:
        lines.append(f"- `{md_text(os.path.relpath(path, output))}`: {md_text(reason)}")
    return "\n".join(lines) + "\n"


def to_frame(records: list[RunRecord], output: Path):
    import pandas as pd

    rows = []
    for r in records:
        rows.append(
            {
                "task": r.task,
                "rank": r.rank,
                "run": r.label,
                "role": r.role,
                "run_folder": r.run_dir.name,
                "comparable_group": r.group,
                "note": r.note,
                "prompt_format": r.prompt_format,
                "checkpoint": checkpoint_cell(r),
                **{k: r.metrics.get(k) for k in _metric_columns(records)},
                "results_file": _link(r, output),
                "manifest": os.path.relpath(r.run_dir / MANIFEST, output) if r.manifest else "",
            }
        )
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["rank"].astype("Int64") if len(frame) else frame.get("rank")
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(csv_text)
    return frame


def _metric_columns(records: list[RunRecord]) -> list[str]:
    present = {
        k
        for r in records
        for k in r.metrics
        if not k.startswith(PRIVACY_PREFIXES) or any(x.number(k) is not None for x in records)
    }
    ordered = [a for a in AGGREGATES if a in present]
    ordered += [f"{s}_{m}" for s in SETS for m in PER_SET if f"{s}_{m}" in present]
    return ordered + sorted(present - set(ordered))


# ---------------------------------------------------------------------- plots
def pyplot():
    """matplotlib's pyplot, headless, with stable SVG element ids (same runs, same file)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "lm-unlearn"
    import matplotlib.pyplot as plt

    return plt


def figure_svg(figure) -> str:
    """A figure as an inline <svg> element (closed afterwards)."""
    plt = pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def scatter_axes(records: list[RunRecord]) -> tuple[str, str, str]:
    """(x metric, y metric, note): MU against FE, or the nearest measured stand-ins, said so."""
    have = lambda m: bool(records) and all(r.number(m) is not None for r in records)  # noqa: E731
    x = "forget_efficacy" if have("forget_efficacy") else "forget_rougeL_recall"
    y = "model_utility" if have("model_utility") else "tofu_model_utility"
    notes = []
    if x != "forget_efficacy":
        notes.append(
            "forget efficacy is N/A for some runs (it needs entailment), so x is 1 − forget ROUGE-L recall"
        )
    if y != "model_utility":
        notes.append(
            "the 18-component model utility is N/A for some runs, so y is TOFU's 9-component one"
        )
    return x, y, "; ".join(notes)


def short_labels(records: list[RunRecord]) -> tuple[list[str], str]:
    """Plot labels without the parts every run shares (" · base · split"), and those parts."""
    parts = [r.label.split(" · ") for r in records]
    shared: list[str] = []
    while parts and all(len(p) > 1 for p in parts) and len({p[-1] for p in parts}) == 1:
        shared.insert(0, parts[0][-1])
        parts = [p[:-1] for p in parts]
    labels = [
        " · ".join(p) + (f" ({r.role})" if r.role else "")
        for p, r in zip(parts, records, strict=True)
    ]
    return labels, " · ".join(shared)


MARKERS = "osD^vP*Xph<>"


def _plain(text: str) -> str:
    """Text that matplotlib prints as written (a "$" would start math mode)."""
    return text.replace("$", r"\$")


def scatter_svg(records: list[RunRecord]) -> tuple[str, str]:
    """Utility against forgetting: one numbered marker per run, the names in a legend beside the
    plot, so labels never overlap however close the points are."""
    plt = pyplot()

    x_metric, y_metric, note = scatter_axes(records)
    labels, shared = short_labels(records)
    points = [
        (r, name, r.number(x_metric), r.number(y_metric))
        for r, name in zip(records, labels, strict=True)
    ]
    points = [(r, name, x, y) for r, name, x, y in points if x is not None and y is not None]
    flip = x_metric == "forget_rougeL_recall"
    figure, axis = plt.subplots(figsize=(8.6, 4.6))
    colors = plt.get_cmap("tab10").colors
    axis.set_xlim(-0.02, 1.02)
    axis.set_ylim(-0.02, 1.02)
    placed: list[tuple[float, float]] = []  # tag positions so far, in points on the page
    for index, (record, name, x, y) in enumerate(points):
        x = 1 - x if flip else x
        tag = _rank_cell(record) if record.rank is not None else "R"
        axis.scatter(
            x, y, s=70, marker=MARKERS[index % len(MARKERS)], color=colors[index % 10],
            edgecolor="black", linewidth=0.5, label=_plain(f"{tag}: {name}"), zorder=3,
        )  # fmt: skip
        offset = _free_offset(axis, x, y, placed)
        axis.annotate(tag, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    axis.set_xlabel("1 − forget ROUGE-L recall" if flip else "forget efficacy")
    axis.set_ylabel(
        "model utility (MU-18)" if y_metric == "model_utility" else "TOFU model utility (MU-9)"
    )
    title = "utility against forgetting (up and right is better)"
    axis.set_title(_plain(f"{title}\n{shared}" if shared else title), fontsize=10)
    axis.grid(alpha=0.3)
    if points:
        axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return figure_svg(figure), note


# Where a point's tag may go, nearest first (points right and up of the point).
TAG_OFFSETS = [(6, 5), (6, -11), (-14, 5), (-14, -11), (6, 17), (-14, 17), (6, -23), (-14, -23),
               (18, 5), (18, -11), (-26, 5), (-26, -11), (18, 17), (-26, 17), (18, -23)]  # fmt: skip


def _free_offset(axis, x: float, y: float, placed: list[tuple[float, float]]) -> tuple[int, int]:
    """The first tag offset that keeps this tag at least a tag's size from the others (points
    that coincide get their tags around them instead of on top of each other)."""
    dpi_scale = 72.0 / axis.figure.dpi
    px, py = (value * dpi_scale for value in axis.transData.transform((x, y)))
    for dx, dy in TAG_OFFSETS:
        spot = (px + dx, py + dy)
        if all(abs(spot[0] - a) >= 10 or abs(spot[1] - b) >= 10 for a, b in placed):
            placed.append(spot)
            return dx, dy
    placed.append((px + 6, py + 5))
    return 6, 5


def bars_svg(records: list[RunRecord]) -> str:
    """One horizontal bar chart per metric, each bar labelled with its value beside its end
    (left of a negative bar, right of a positive one), and, where the best value is the retain
    model's, a dashed line there."""
    plt = pyplot()

    metrics = [m for m in SUMMARY_COLUMNS if any(r.number(m) is not None for r in records)]
    if not metrics:
        return ""
    labels, shared = short_labels(records)
    labels = [_plain(name) for name in labels]
    columns = 2
    rows = math.ceil(len(metrics) / columns)
    height = max(1.8, 0.32 * len(records) + 1.0)
    figure, axes = plt.subplots(rows, columns, figsize=(11, height * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        _bar_panel(axis, metric, records, labels)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    if shared:
        figure.suptitle(_plain(shared), fontsize=10)
    figure.tight_layout()
    return figure_svg(figure)


def _bar_panel(axis, metric: str, records: list[RunRecord], labels: list[str]) -> None:
    from harness_ext.metrics.ideals import RETAIN, ideal_of

    values = [r.number(metric) for r in records]
    positions = range(len(records))
    drawn = [v if v is not None else 0.0 for v in values]
    axis.barh(positions, drawn, color="#4c72b0")
    axis.set_yticks(list(positions), labels)
    ideal = ideal_of(metric)
    target = ranking.retain_value(records[0], metric, records) if ideal.kind == RETAIN else None
    if metric == "forget_quality":
        axis.set_xscale("log")
        axis.set_xlim(min([v for v in values if v] or [1e-3]) / 10, 8.0)
    else:  # privleak is a signed percentage; everything else lies in [0, 1]
        low, high = min(0.0, *drawn), max(1.0 if min(drawn) >= 0 else 0.0, *drawn)
        room = 0.3 * (high - low)  # for the value labels beside the bars' ends
        axis.set_xlim(low - (room if low < 0 else 0.0), high + room)
    if target is not None:
        axis.axvline(target, color="#c44e52", linestyle="--", linewidth=1)
    for position, value in zip(positions, values, strict=True):
        text = "N/A" if value is None else cell(value, metric)
        if value is not None and value < 0:
            axis.text(value, position, f"{text} ", va="center", ha="right", fontsize=7)
        else:
            x = axis.get_xlim()[0] if value is None else value
            axis.text(x, position, f" {text}", va="center", ha="left", fontsize=7)
    axis.set_title(_plain(f"{label(metric)} ({ideal.describe(target)})"), fontsize=9)
    axis.tick_params(labelsize=8)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)


# ---------------------------------------------------------------------- HTML
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = th.dataset.order !== 'asc'; th.dataset.order = ascending ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value || a.cells[column].innerText;
        var y = b.cells[column].dataset.value || b.cells[column].innerText;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? cmp : -cmp;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; position: sticky; top: 0; }
td.name, th.name { text-align: left; white-space: nowrap; }
tr.apart td { color: #888; }
tr.reference td { background: #f7f7ee; font-style: italic; }
.note { color: #555; font-size: 13px; }
.wrap { overflow-x: auto; max-width: 100%; }
"""


def _html_table(records: list[RunRecord], columns: list[str], output: Path) -> str:
    selected = any(selection_of(r) for r in records)
    head = "<th class='name'>checkpoint</th>" * selected
    head += "".join(
        f"<th title='{html.escape(c + ': ' + definition(c), quote=True)}'>"
        f"{html.escape(label(c))}</th>"
        for c in columns
    )
    out = [
        "<div class='wrap'><table class='sortable'><thead><tr>"
        f"<th>#</th><th class='name'>run</th><th>prompt</th>{head}<th class='name'>note</th>"
        "</tr></thead><tbody>"
    ]
    for r in records:
        cells = [f"<td class='name'>{html.escape(checkpoint_cell(r))}</td>"] * selected
        for c in columns:
            number = r.number(c)
            value = "" if number is None else repr(number)
            cells.append(f"<td data-value='{value}'>{html.escape(cell(r.metrics.get(c), c))}</td>")
        link = html.escape(_link(r, output), quote=True)
        css = " class='apart'" if r.note else (" class='reference'" if r.role else "")
        rank = "" if r.note else _rank_cell(r)
        out.append(
            f"<tr{css}><td>{rank}</td><td class='name'><a href='{link}' "
            f"title='{html.escape(r.run_dir.name, quote=True)}'>{html.escape(_name_cell(r))}</a></td>"
            f"<td>{html.escape(str(r.prompt_format))}</td>{''.join(cells)}"
            f"<td class='name' title='{html.escape(r.note)}'>"
            f"{html.escape('differs in ' + ', '.join(r.differs) if r.differs else '')}</td></tr>"
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _html_glossary(columns: list[str], missing: dict[str, list[str]], records) -> str:
    items = "".join(
        f"<li><b>{html.escape(name)}</b> (<code>{html.escape(key)}</code>): "
        f"{html.escape(meaning)}; {html.escape(best)}.</li>"
        for name, key, meaning, best in glossary(columns, records)
    )
    items += "".join(
        f"<li>Not shown, N/A in every run: "
        f"{html.escape(', '.join(label(n) for n in names))}: {html.escape(reason)}.</li>"
        for reason, names in missing.items()
    )
    return f"<ul class='note'>{items}</ul>"


def to_html(
    tables: dict[str, Table],
    records: list[RunRecord],
    output: Path,
    title: str,
    unread: list[tuple[Path, str]] | None = None,
    extra: str = "",
) -> str:
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p class='note'>Click a column header to sort; hover it for its definition. Each run "
        "links to its lm-eval results file; hover a name for its run folder. References (in "
        "italics) are the models the others are measured against; they are not ranked.</p>",
    ]
    for task, table in tables.items():
        main, apart = table.main, table.apart
        columns, missing = numbered_columns(main + apart)
        rows = rows_text(main[0].comparability["rows_per_set"])
        parts.append(f"<h2>{html.escape(task)}</h2>")
        parts.append(
            f"<p class='note'>{html.escape(ranking_sentence(table))} {len(apart)} kept apart "
            f"(grey, with the reason). Rows per set: {html.escape(rows)}.</p>"
        )
        if sentence := selection_sentence(main, table.ranking):
            parts.append(f"<p class='note'>{html.escape(sentence)}</p>")
        parts.append(_html_table(main + apart, columns, output))
        parts.append(_html_glossary(columns, missing, main))
        if apart:
            items = "".join(
                f"<li><b>{html.escape(r.label)}</b>: {html.escape(r.note.removeprefix('not comparable: '))}</li>"
                for r in apart
            )
            parts.append(f"<p class='note'>Kept apart:</p><ul class='note'>{items}</ul>")
        scatter, note = scatter_svg(main)
        parts.append("<h3>Model utility against forget efficacy</h3>")
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}.</p>")
        parts.append(scatter)
        parts.append("<h3>Per-metric comparison</h3>")
        parts.append(bars_svg(main))
    parts.append(extra)
    if unread:
        items = "".join(
            f"<li><code>{html.escape(os.path.relpath(path, output))}</code>: "
            f"{html.escape(reason)}</li>"
            for path, reason in unread
        )
        parts.append(f"<h2>Not read</h2><ul class='note'>{items}</ul>")
    parts.append("<script>" + SORT_SCRIPT + "</script></body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------- entry point
def build_leaderboard(
    runs: list[Path],
    output: Path,
    title: str = "TOFU unlearning leaderboard",
    rank_by: str | None = None,
) -> Leaderboard:
    """Read the runs, rank the comparable ones, write the Markdown, CSV and HTML files."""
    from harness_ext.provenance import write_text_atomic

    check_rank_metric(rank_by)  # before reading anything
    unread: list[tuple[Path, str]] = []
    records = read_runs([Path(p) for p in runs], unread)
    # attacked runs (lm-unlearn audit) are not ranked: they fill the robustness table
    attacked = [r for r in records if robustness.attack_of(r.manifest)]
    tables = group_and_rank([r for r in records if not robustness.attack_of(r.manifest)], rank_by)
    output = Path(output)
    ordered = [r for table in tables.values() for r in table.main + table.apart]
    robust_md, robust_html, robust_csv = robustness_section(attacked, output)
    markdown = to_markdown(tables, output, title) + robust_md
    markdown += "\n" + unread_markdown(unread, output) if unread else ""
    # every file is built before any is written: an error leaves the old files as they were
    contents = {
        "LEADERBOARD.md": markdown + "\n",
        "leaderboard.csv": to_frame(ordered, output).to_csv(index=False),
        "leaderboard.html": to_html(tables, ordered, output, title, unread, robust_html),
    }
    if robust_csv is not None:
        contents[ROBUSTNESS_CSV] = robust_csv
    output.mkdir(parents=True, exist_ok=True)
    files = [write_text_atomic(output / name, text) for name, text in contents.items()]
    if robust_csv is None:  # no attacked runs now: an earlier table would be stale
        (output / ROBUSTNESS_CSV).unlink(missing_ok=True)
    board = Leaderboard(ordered, markdown, files)
    board.unread = unread
    return board


# ---------------------------------------------------------------------- robustness
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_NOTE = (
    "Forget metrics of each unlearned model before and after an attack of `lm-unlearn audit` "
    "(relearning on part of the forget set, then scored on the rest; 8- and 4-bit weights; "
    "paraphrased forget questions), shown as before → after. recovery = (after − before) / "
    "(target − before), with target the model before unlearning on the same rows: 0 nothing "
    "came back, 1 all of it; N/A where target − before is within its noise (the unlearned "
    "model already scores like the target). Relearning can teach facts a model never knew, "
    "so it is run the same way on the retain model (the control): gain − control's is what "
    "came back beyond what relearning gives a model that never learned the forget rows."
)


def robustness_section(attacked: list[RunRecord], output: Path) -> tuple[str, str, str | None]:
    """(Markdown, HTML, CSV text or None) of the robustness table of the attacked runs."""
    rows = robustness.rows_from_runs(attacked)
    if not rows:
        return "", "", None
    link = lambda row: _link(row["record"], output)  # noqa: E731
    text = f"\n## Robustness (lm-unlearn audit)\n\n{ROBUSTNESS_NOTE}\n\n"
    text += robustness.summary_markdown(rows, link)
    text += f"\n\nEvery forget metric, before, after and target: `{ROBUSTNESS_CSV}`.\n"
    figure = robustness.figure(rows, pyplot())
    page = (
        f"<h2>Robustness (lm-unlearn audit)</h2><p class='note'>{html.escape(ROBUSTNESS_NOTE)}</p>"
        + robustness.summary_html(rows, link)
        + (figure_svg(figure) if figure is not None else "")
    )
    table = [{**row, "run": row["record"].label, "results_file": link(row)} for row in rows]
    return text, page, robustness.csv(table)
