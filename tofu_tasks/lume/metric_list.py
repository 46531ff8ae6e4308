"""The metrics of the LUME task, with their lm-eval aggregations: per forget and retain set, each
subtask's regurgitation (``sc`` rows: ROUGE-L recall) and knowledge (``qa`` rows: exact match, and
ROUGE-L recall beside it) and the set's overall ones; the challenge's task aggregate, MIA score
and final score (:mod:`harness_ext.metrics.lume`); and the shared membership attacks of the
forget rows against the holdout."""

from __future__ import annotations

from harness_ext.lm_eval_plugin import registry
from harness_ext.metrics import lume

ROUGE = "rougeL_recall"
EXACT = "exact_match"
KIND_METRICS = {"sc": (ROUGE,), "qa": (EXACT, ROUGE)}
AGGREGATES = (
    ("lume_task_aggregate", "lume_task_aggregate"),
    ("lume_mia_score", "lume_mia_score"),
    ("lume_final_score", "lume_final_score"),
)
AGGREGATIONS = {
    "lume_task_aggregate": lume.aggregate_task,
    "lume_mia_score": lume.aggregate_mia_score,
    "lume_final_score": lume.aggregate_final,
}


def row_metrics(split: str, subtask: str, kind: str) -> list[str]:
    """The per-row metrics a row of ``split`` reports: its subtask's and its set's overall."""
    part = subtask.lower()
    return [f"{split}_{part}_{kind}_{name}" for name in KIND_METRICS[kind]] + [
        f"{split}_{kind}_{name}" for name in KIND_METRICS[kind]
    ]


def per_row_metrics() -> list[str]:
    names: list[str] = []
    for split in lume.SPLITS:
        for subtask in lume.SUBTASKS:
            for kind in lume.KINDS:
                names += [n for n in row_metrics(split, subtask, kind) if n not in names]
    return names


def metric_list() -> list[dict]:
    """The LUME task's lm-eval metric_list."""
    pairs = [*((name, "tofu_mean_or_na") for name in per_row_metrics()), *AGGREGATES,
             *registry.PRIVACY_METRICS]  # fmt: skip
    return registry.metric_entries(pairs)


def register() -> None:
    """The LUME metric names in lm-eval's registries (idempotent)."""
    registry.register(AGGREGATIONS, metric_list())
