"""Reading lm-eval output folders: results files and the metric values inside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def latest_results(output: str | Path) -> dict[str, Any]:
    """The newest ``results_*.json`` under an lm-eval ``--output_path`` folder."""
    files = sorted(Path(output).glob("**/results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no lm-eval results file under {output}")
    return json.loads(files[-1].read_text(encoding="utf-8"))


def task_metrics(results: dict[str, Any], task: str) -> dict[str, Any]:
    """Metric values of one task (filter suffix and stderr dropped), in the order of the task's
    metric_list (per-set metrics in set order, then the aggregates), then anything else."""
    values = results["results"][task]
    flat = {k.split(",")[0]: v for k, v in values.items() if "," in k and "_stderr" not in k}
    listed = ((results.get("configs") or {}).get(task) or {}).get("metric_list") or []
    known = [entry["metric"] for entry in listed if entry.get("metric") in flat]
    return {name: flat[name] for name in known + sorted(set(flat) - set(known))}
