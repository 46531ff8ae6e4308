"""The documents of a LUME run: one per row of the forget and retain files, with its set, its row
(its line in the file), subtask and kind; the holdout's rows (retain rows the model never saw)
form their own set. ``question`` is the row's input and ``answer`` its expected output; ``text``
(input + output, joined as the challenge's evaluation joins them) is what membership inference
scores.
"""

from __future__ import annotations

from typing import Any

from tofu_tasks.lume.data import read_split
from tofu_tasks.lume.options import LUME_SETS, LumeOptions


def lume_docs(options: LumeOptions) -> list[dict[str, Any]]:
    """The documents of a run: the chosen sets, subtasks and kinds, at most ``max_rows_per_set``
    rows of each (set, subtask, kind), sets interleaved (lm-eval's ``--limit`` keeps some of
    each)."""
    from tofu_tasks.data import row_limits, set_names
    from tofu_tasks.documents import interleave_sets

    wanted = set_names(options.sets) if options.sets else list(LUME_SETS)
    limits = row_limits(options.max_rows_per_set, LUME_SETS) if options.max_rows_per_set else {}
    subtasks, kinds = set(options.subtask_list()), set(options.kind_list())
    docs: list[dict[str, Any]] = []
    for split in ("forget", "retain"):
        # row numbers count the chosen subtasks' rows (options.py); "row" stays the file's line
        rows = [(number, row) for number, row in enumerate(read_split(split, options.data_dir))
                if row["task"] in subtasks]  # fmt: skip
        holdout = options.holdout_rows(len(rows)) if split == "retain" else None
        scored = options.scored_rows(split, len(rows))
        for position, (number, row) in enumerate(rows):
            in_holdout = holdout is not None and position in holdout
            set_name = "holdout" if in_holdout else split
            if not in_holdout and scored is not None and position not in scored:
                continue
            if set_name in wanted and row["kind"] in kinds:
                docs.append({"set": set_name, "row": number, "id": row["id"],
                             "subtask": row["task"], "kind": row["kind"],
                             "question": row["input"], "answer": row["output"],
                             "text": row["input"] + row["output"]})  # fmt: skip
    kept, seen = [], {}
    for doc in docs:
        key = (doc["set"], doc["subtask"], doc["kind"])
        seen[key] = seen.get(key, 0) + 1
        limit = limits.get(doc["set"])
        if limit is None or seen[key] <= limit:
            kept.append(doc)
    return interleave_sets(kept)
