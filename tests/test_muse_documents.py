"""MUSE's documents ask exactly what open-unlearning asks: the knowledge prompts (three in-context
examples, the question, a lone space after "Answer:") and the verbatim prompts equal the inputs
in open-unlearning's own per-row outputs for the conformance kit, row by row."""

import json

from tests.test_muse_data import NEWS
from tofu_tasks.muse.documents import knowmem_docs, privleak_docs, verbmem_docs

OU_ROWS = NEWS.parents[2] / "ou_muse_news" / "rows.jsonl"
METRIC_OF = {"forget_knowmem": "forget_knowmem_ROUGE", "retain_knowmem": "retain_knowmem_ROUGE",
             "forget_verbmem": "forget_verbmem_ROUGE"}  # fmt: skip


def ou_rows(metric: str) -> dict[int, dict]:
    rows = [json.loads(line) for line in OU_ROWS.read_text().splitlines()]
    return {int(r["index"]): r for r in rows if r["metric"] == metric}


def test_knowledge_prompts_are_open_unlearnings_row_by_row():
    docs = knowmem_docs("news", NEWS)
    assert len(docs) == 40
    for doc in docs:
        theirs = ou_rows(METRIC_OF[doc["set"]])[doc["row"]]
        assert doc["prompt"] == theirs["input"], (doc["set"], doc["row"])
        assert doc["prompt"].endswith("Answer: ")
        assert (doc["question"], doc["answer"]) == (theirs["question"], theirs["answer"])


def test_verbatim_prompts_are_open_unlearnings_row_by_row():
    docs = verbmem_docs("news", NEWS)
    theirs = ou_rows("forget_verbmem_ROUGE")
    assert len(docs) == len(theirs) == 10
    for doc in docs:
        assert doc["prompt"] == theirs[doc["row"]]["input"] == theirs[doc["row"]]["prompt"]
        assert doc["answer"] == theirs[doc["row"]]["gt"]


def test_privacy_texts_are_the_forget_and_holdout_texts_open_unlearning_scores():
    docs = privleak_docs("news", NEWS)
    rows = [json.loads(line) for line in OU_ROWS.read_text().splitlines()]
    for set_name in ("forget", "holdout"):
        mine = [d["text"] for d in docs if d["set"] == set_name]
        ou = [r["text"] for r in rows if r["metric"] == "mia_min_k" and r["mia_split"] == set_name]
        assert mine == ou and len(mine) == 10


def test_generations_read_as_open_unlearning_reads_them():
    """OU's new tokens of every row, decoded without clean-up (as lm-eval's backends decode),
    then cleaned, cut at the criterion's stop words and stripped: OU's generation, and the
    references its ground truths (verbmem row 2's "the 'real' world" becomes "the'real' world")."""
    from transformers import AutoTokenizer

    from harness_ext.metrics.muse import KNOWMEM_STOP_WORDS
    from tofu_tasks.muse.documents import as_open_unlearning_reads

    tokenizer = AutoTokenizer.from_pretrained(NEWS.parents[2] / "tiny-muse-llama")
    checked = 0
    for run in ("ou_muse_news", "ou_muse_news_retain"):
        lines = (NEWS.parents[2] / run / "rows.jsonl").read_text().splitlines()
        for row in map(json.loads, lines):
            if not row["metric"].endswith("_ROUGE"):
                continue
            stops = () if "verbmem" in row["metric"] else KNOWMEM_STOP_WORDS
            text = tokenizer.decode(row["gen_ids"], skip_special_tokens=True)
            assert as_open_unlearning_reads(tokenizer, text, stops) == row["generation"]
            reference = row["answer"] if "knowmem" in row["metric"] else row["gt"]
            assert as_open_unlearning_reads(tokenizer, reference) == row["ground_truth"]
            checked += 1
    assert checked == 100
