"""The documents of one run of the TOFU tasks: the checked rows of every scored set, the
holdout rows of membership inference, sets interleaved."""

from __future__ import annotations

from typing import Any

from tofu_tasks import data
from tofu_tasks.eval_sets import FORGET
from tofu_tasks.options import TaskOptions


def interleave_sets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents in turn from each set (forget, retain, real authors, world facts, forget, ...),
    so that lm-eval's ``--limit N`` keeps rows of every set rather than the first set only."""
    by_set: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_set.setdefault(doc["set"], []).append(doc)
    queues = list(by_set.values())
    longest = max((len(q) for q in queues), default=0)
    return [q[i] for i in range(longest) for q in queues if i < len(q)]


def holdout_for(options: TaskOptions) -> data.Holdout:
    """The run's holdout rows (non-members for membership inference), checked against the
    whole forget split."""
    if data.HOLDOUT_SET not in data.scored_sets(options.sets):
        return data.Holdout((), None, "no holdout rows (the task option sets leaves it out)")
    forget = data.read_split(FORGET.source_file(options.forget_split), options.data_dir)
    return data.holdout_rows(
        options.holdout,
        options.forget_split,
        options.data_dir,
        limit=data.row_limits(options.max_rows_per_set).get(data.HOLDOUT_SET),
        forget_questions=(r["question"] for r in forget),
    )


def eval_docs(options: TaskOptions, holdout: data.Holdout | None = None) -> list[dict[str, Any]]:
    """The checked documents of one run of the task, sets interleaved (``holdout``: the
    run's holdout rows when the caller has them already)."""
    docs = data.build_eval_docs(
        options.forget_split,
        options.rows,
        options.max_rows_per_set,
        options.data_dir,
        forget_rows=options.forget_rows,
        forget_question=options.forget_question,
        retain_question=options.retain_question,
    )
    scored = data.scored_sets(options.sets)
    docs = [doc for doc in docs if doc["set"] in scored]
    holdout = holdout_for(options) if holdout is None else holdout
    return interleave_sets(docs + list(holdout.docs))
