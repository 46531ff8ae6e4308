"""The documents of a MUSE run: one per row of each criterion's split, with the prompt the model
is asked in.

- knowledge memorisation (``forget_knowmem``, ``retain_knowmem``): the split's three in-context
  examples, then the question, in MUSE's plain format; the prompt ends in a lone space after
  ``Answer:`` and the answer is the reference of ROUGE-L;
- verbatim memorisation (``forget_verbmem``): the beginning of a forget passage as the prompt,
  its continuation as the reference;
- privacy leakage (``forget`` and ``holdout``): whole texts, scored by membership inference
  against each other.

>>> knowmem_prompt([{"question": "Q1?", "answer": "A1."}], "Q?")
'Question: Q1?\\nAnswer: A1.\\n\\nQuestion: Q?\\nAnswer: '
"""

from __future__ import annotations

import os
from typing import Any

from harness_ext.metrics.eval_set import FORGET_SET
from harness_ext.metrics.privacy import HOLDOUT
from tofu_tasks.muse.data import MuseDataError, read_split
from tofu_tasks.muse.options import KNOWMEM_SETS, MUSE_SETS, VERBMEM_SET

# MUSE's plain QA format (open-unlearning's template for base models)
QUESTION_TAG = "Question: "
QUESTION_END = "\n"
ANSWER_TAG = "Answer: "
ANSWER_END = "\n\n"
# (set, split, in-context split) of the knowledge criteria
KNOWMEM_SPLITS = tuple(
    zip(KNOWMEM_SETS, ("forget_qa", "retain_qa"), ("forget_qa_icl", "retain_qa_icl"), strict=True)
)


def knowmem_prompt(examples: list[dict[str, str]], question: str) -> str:
    """The in-context examples, then the question, its answer left to the model."""
    shots = "".join(
        f"{QUESTION_TAG}{e['question']}{QUESTION_END}{ANSWER_TAG}{e['answer']}{ANSWER_END}"
        for e in examples
    )
    return f"{shots}{QUESTION_TAG}{question}{QUESTION_END}{ANSWER_TAG}"


def knowmem_docs(corpus: str, data_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    docs = []
    for set_name, split, icl_split in KNOWMEM_SPLITS:
        examples = read_split(corpus, "knowmem", icl_split, data_dir)
        for row, item in enumerate(read_split(corpus, "knowmem", split, data_dir)):
            docs.append(
                {
                    "set": set_name,
                    "row": row,
                    "question": item["question"],
                    "answer": item["answer"],
                    "prompt": knowmem_prompt(examples, item["question"]),
                }
            )
    return docs


def verbmem_docs(corpus: str, data_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    rows = read_split(corpus, "verbmem", "forget", data_dir)
    return [
        {"set": VERBMEM_SET, "row": row, "question": item["prompt"], "prompt": item["prompt"],
         "answer": item["gt"]}
        for row, item in enumerate(rows)
    ]  # fmt: skip


def privleak_docs(
    corpus: str,
    data_dir: str | os.PathLike | None,
    forget_texts: tuple[str, str] = ("privleak", "forget"),
) -> list[dict[str, Any]]:
    """The member texts (``forget_texts``: config and split) and the holdout texts; a text is
    its row's ``question`` too, the key references match rows by."""
    sources = {FORGET_SET: forget_texts, HOLDOUT: ("privleak", "holdout")}
    return [
        {"set": set_name, "row": row, "question": item["text"], "text": item["text"]}
        for set_name, (config, split) in sources.items()
        for row, item in enumerate(read_split(corpus, config, split, data_dir))
    ]


def muse_docs(options) -> list[dict[str, Any]]:
    """The documents of a run (``options``: the task's :class:`MuseOptions`): the chosen sets,
    at most ``max_rows_per_set`` rows each, sets interleaved (so lm-eval's ``--limit`` keeps
    some of each)."""
    from tofu_tasks.data import row_limits, set_names
    from tofu_tasks.documents import interleave_sets

    wanted = set_names(options.sets) if options.sets else list(MUSE_SETS)
    unknown = sorted(set(wanted) - set(MUSE_SETS))
    if unknown:
        raise MuseDataError(f"sets names unknown sets {unknown}; the MUSE sets are {MUSE_SETS}")
    limits = row_limits(options.max_rows_per_set, MUSE_SETS) if options.max_rows_per_set else {}
    docs: list[dict[str, Any]] = []
    if set(wanted) & set(KNOWMEM_SETS):
        docs += knowmem_docs(options.corpus, options.data_dir)
    if VERBMEM_SET in wanted:
        docs += verbmem_docs(options.corpus, options.data_dir)
    if set(wanted) & {FORGET_SET, HOLDOUT}:
        docs += privleak_docs(options.corpus, options.data_dir, options.forget_texts_split())
    kept = [
        doc
        for doc in docs
        if doc["set"] in wanted
        and (limits.get(doc["set"]) is None or doc["row"] < limits[doc["set"]])
    ]
    # every document carries every field (datasets takes the columns from the first one)
    fields = list(dict.fromkeys(key for doc in kept for key in doc))
    return interleave_sets([{key: doc.get(key) for key in fields} for doc in kept])


def as_open_unlearning_reads(tokenizer, text: str, stop_words: tuple[str, ...] = ()) -> str:
    """A generation (or a reference) as MUSE's metrics read it in open-unlearning: decoded text
    with the tokenizer's clean-up of spaces before punctuation and contractions, cut at the
    first stop word, stripped. (transformers 5 no longer applies ``clean_up_tokenization_spaces``
    to BPE tokenizers when decoding, so it is applied here, as open-unlearning's decode did.)"""
    from harness_ext.metrics.muse import cut_at_stop_words

    return cut_at_stop_words(tokenizer.clean_up_tokenization(text), stop_words)
