"""The documents of a WMDP run: each WMDP domain's questions and MMLU's, one document per
question, carrying its set, its row and the description lm-eval's own task puts before it.

A row number is the question's place in its set whatever rows a run keeps: a WMDP domain's rows
in its split's order, MMLU's across its subjects in lm-eval's order (``abstract_algebra`` first),
so a run of a few rows and a full run of the model before unlearning name the same questions
alike. ``max_rows_per_set`` keeps the first rows of each WMDP domain and of each MMLU subject (a
quick run still asks every subject).
"""

from __future__ import annotations

from typing import Any

from tofu_tasks.wmdp.data import lm_eval_task_config, read_mmlu, read_wmdp
from tofu_tasks.wmdp.options import MMLU_SET, WmdpOptions


def domain_docs(domain: str, data_dir: str | None) -> list[dict[str, Any]]:
    description = lm_eval_task_config(f"wmdp_{domain}").get("description", "")
    return [
        {"set": f"wmdp_{domain}", "row": row, "subject": domain, "question": item["question"],
         "choices": list(item["choices"]), "answer": int(item["answer"]),
         "description": description}
        for row, item in enumerate(read_wmdp(domain, data_dir))
    ]  # fmt: skip


def mmlu_docs(subjects: list[str], data_dir: str | None) -> list[list[dict[str, Any]]]:
    """MMLU's documents, one list per subject, rows numbered across the subjects."""
    per_subject, row = [], 0
    for subject in subjects:
        description = lm_eval_task_config(f"mmlu_{subject}").get("description", "")
        docs = []
        for item in read_mmlu(subject, data_dir):
            docs.append({"set": MMLU_SET, "row": row, "subject": subject,
                         "question": item["question"], "choices": list(item["choices"]),
                         "answer": int(item["answer"]), "description": description})  # fmt: skip
            row += 1
        per_subject.append(docs)
    return per_subject


def wmdp_docs(options: WmdpOptions) -> list[dict[str, Any]]:
    """The documents of a run: the chosen sets, at most ``max_rows_per_set`` rows of each WMDP
    domain and of each MMLU subject, sets interleaved (lm-eval's ``--limit`` keeps some of
    each)."""
    from tofu_tasks.data import row_limits
    from tofu_tasks.documents import interleave_sets

    sets = options.scored_sets()
    limits = row_limits(options.max_rows_per_set, sets) if options.max_rows_per_set else {}
    groups = [
        domain_docs(name.removeprefix("wmdp_"), options.data_dir)
        for name in sets
        if name != MMLU_SET
    ]
    if MMLU_SET in sets:
        groups += mmlu_docs(options.subject_list(), options.mmlu_data_dir)
    docs = []
    for group in groups:
        limit = limits.get(group[0]["set"]) if group else None
        docs += group if limit is None else group[:limit]
    return interleave_sets(docs)


def fewshot_examples(
    doc: dict[str, Any], pool: list[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """``count`` questions of ``pool`` (the document's domain) other than the document itself,
    drawn by a generator seeded with its set and row: the same examples in every run."""
    import random

    others = [example for example in pool if example["row"] != doc["row"]]
    if count > len(others):
        raise ValueError(
            f"fewshot {count}: {doc['set']} has only {len(others)} other questions to show"
        )
    return random.Random(f"{doc['set']}:{doc['row']}").sample(others, count)
