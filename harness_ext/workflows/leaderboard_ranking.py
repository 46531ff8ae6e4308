"""Grouping runs into comparable tables and ranking each by the chosen metric's ideal."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness_ext.metrics.ideals import parse_ranking
from harness_ext.workflows import ranking
from harness_ext.workflows.leaderboard_runs import RunRecord, selection_of
from harness_ext.workflows.table_cells import short_text


# ---------------------------------------------------------------------- grouping and ranking
def difference(record: dict[str, Any], main: dict[str, Any]) -> str:
    parts = []
    for name, value in record.items():
        if value != main.get(name):
            parts.append(
                f"{name.replace('_', ' ')} {short_text(value)} (table: {short_text(main.get(name))})"
            )
    return "; ".join(parts)


def rankable_metrics() -> set[str]:
    """Every metric the tasks report, and the real-world utility the leaderboard adds."""
    from tofu_tasks.lume.metric_list import metric_list as lume_metrics
    from tofu_tasks.metric_list import known_metrics
    from tofu_tasks.muse.metric_list import metric_list as muse_metrics
    from tofu_tasks.wmdp.metric_list import metric_list as wmdp_metrics

    others = [entry["metric"] for entry in (*muse_metrics(), *wmdp_metrics(), *lume_metrics())]
    return {*known_metrics(), *known_metrics("realworld"), *others, "model_utility_with_general"}


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
    utility_gate: ranking.UtilityGate | None = None  # runs that keep utility ranked first


def group_and_rank(
    records: list[RunRecord], rank_by: str | None = None, utility_tolerance: float | None = None
) -> dict[str, Table]:
    """Per task: the ranked runs, the runs kept apart, and what ranks them (at matched utility
    where the ranking metric has a utility gate, :data:`ranking.UTILITY_GATES`)."""
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
        gate = None
        if metric:
            ranking.check_computable(ranked, metric, main)
            ranked = ranking.order(ranked, metric, main)
            gate = ranking.utility_gate(metric, ranked, utility_tolerance)
            if gate:
                ranked = gate.first_kept(ranked)
        else:
            ranked.sort(key=lambda r: r.label)
        for position, record in enumerate(ranked, 1):
            record.rank = position
        tables[task] = Table(ranked + references, apart, metric, matched, gate)
    return tables
