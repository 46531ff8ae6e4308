"""The leaderboard as text: its Markdown page (ranking sentence, table, glossary, what was left
out) and its CSV frame."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from harness_ext.metrics.glossary import definition, label
from harness_ext.metrics.ideals import parse_ranking
from harness_ext.workflows import ranking
from harness_ext.workflows.leaderboard_ranking import Table
from harness_ext.workflows.leaderboard_runs import (
    AGGREGATES,
    BENCHMARK_COLUMNS,
    PER_SET,
    PRIVACY_PREFIXES,
    SETS,
    SUMMARY_COLUMNS,
    RunRecord,
    selection_of,
)
from harness_ext.workflows.score_inputs import MANIFEST
from harness_ext.workflows.table_cells import cell, csv_text, md_text, short_text


# ---------------------------------------------------------------------- formatting
def results_link(record: RunRecord, output: Path) -> str:
    """A relative link to the run's results file: "./" first and every path segment
    percent-encoded, so that no run or folder name can make it a scheme (``javascript:``), an
    absolute address or Markdown/HTML syntax."""
    from urllib.parse import quote

    relative = Path(os.path.relpath(record.results_file, output)).as_posix()
    return "./" + "/".join(quote(part, safe="") for part in relative.split("/"))


SIGNS = {"<=": "≤", ">=": "≥"}


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


def rank_cell(record: RunRecord) -> str:
    return str(record.rank) if record.rank is not None else "ref"


def name_cell(record: RunRecord) -> str:
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
    if gate := table.utility_gate:
        kept = sum(gate.keeps(r) for r in table.main if r.rank is not None)
        text += f", at matched utility: {gate.describe()} ({kept} of {ranked} kept it)"
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
            f"{short_text(comparability['data_sha256'])}."
        )
        references = sorted({r.fq_reference_name for r in main if r.fq_reference_name})
        if references:
            names = "; ".join(md_text(name) for name in references)
            # TOFU's runs measure forget quality against it; the other benchmarks privleak
            has_fq = any(r.number("forget_quality") is not None for r in main if not r.role)
            compared = "Forget quality" if has_fq else "privleak"
            lines.append(f"{compared} against the retain reference: {names}.")
        if sentence := selection_sentence(main, table.ranking):
            lines.append(md_text(sentence))
        selected = any(selection_of(r) for r in main)
        header = [label(c) for c in columns]
        heads = ["#", "run", "prompt", *["checkpoint"] * selected, *header]
        lines += ["", "| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
        for r in main:
            cells = [checkpoint_cell(r)] * selected + [cell(r.metrics.get(c), c) for c in columns]
            lines.append(
                f"| {rank_cell(r)} | [{md_text(name_cell(r))}]({results_link(r, output)}) | "
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
                lines.append(f"- [{md_text(r.label)}]({results_link(r, output)}): {note}")
        lines.append("")
    if not tables:
        lines += ["No scored results found (tofu_*_unlearn or muse_*_unlearn, not attacked).", ""]
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
                "results_file": results_link(r, output),
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
    # the other benchmarks' headline columns (the Markdown table's) before the rest
    ordered += [c for c in BENCHMARK_COLUMNS if c in present]
    return ordered + sorted(present - set(ordered))
