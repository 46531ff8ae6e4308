"""The formulas MUSE's tasks use give open-unlearning's per-row values on the conformance kit:
ROUGE-L F1 of each knowledge and verbatim generation, Min-K% of each privacy text from its token
log-probs, extraction strength from the teacher-forced argmax tokens, the AUCs and privleak (for
the target, the retain model, and the target against the retain model's AUC)."""

import json

import pytest

from harness_ext.metrics import privacy
from harness_ext.metrics.muse import KNOWMEM_STOP_WORDS, cut_at_stop_words, rouge_l_f1
from tests.test_muse_data import NEWS

KIT = NEWS.parents[2]


def rows(run: str, metric: str) -> list[dict]:
    lines = (KIT / run / "rows.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["metric"] == metric]


def summary(run: str) -> dict:
    return json.loads((KIT / run / "MUSE_SUMMARY.json").read_text())


RUNS = ("ou_muse_news", "ou_muse_news_retain")
ROUGE_METRICS = ("forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE")


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("metric", ROUGE_METRICS)
def test_rouge_l_f1_per_row_and_mean(run, metric):
    found = rows(run, metric)
    mine = [rouge_l_f1(r["generation"], r["ground_truth"]) for r in found]
    assert mine == [float(r["rougeL_f1"]) for r in found]  # exactly: the same scorer
    assert sum(mine) / len(mine) == pytest.approx(summary(run)[metric], abs=1e-12)


def test_the_cut_keeps_what_open_unlearning_keeps():
    # a generation that ran on past its stop word: what the task cuts is OU's generation
    for row in rows("ou_muse_news", "forget_knowmem_ROUGE"):
        ran_on = row["generation"] + "\n\nQuestion: What else?\nAnswer: more"
        assert cut_at_stop_words(ran_on, KNOWMEM_STOP_WORDS) == row["generation"]
        assert cut_at_stop_words(f" {row['generation']}</s>junk", ()) == row["generation"]


@pytest.mark.parametrize("run", RUNS)
def test_min_k_per_row_auc_and_privleak(run):
    found = rows(run, "mia_min_k")
    for row in found:
        scores = row["token_logprobs"]
        assert row["n_scored"] == len(scores)
        assert privacy.min_k(scores) == pytest.approx(float(row["score"]), rel=1e-6, abs=1e-9)
    forget = [float(r["score"]) for r in found if r["mia_split"] == "forget"]
    holdout = [float(r["score"]) for r in found if r["mia_split"] == "holdout"]
    auc = privacy.auc(forget, holdout)
    ou_eval = json.loads((KIT / run / "MUSE_EVAL.json").read_text())
    assert auc == pytest.approx(ou_eval["mia_min_k"]["agg_value"], abs=1e-12)
    # OU's default reference AUC of 0.5, which the project replaces by the retain model's
    assert privacy.privleak(auc, 0.5) == pytest.approx(summary(run)["privleak"], abs=1e-6)


def test_privleak_against_the_retain_models_auc():
    retain = json.loads((KIT / "ou_muse_news_retain" / "MUSE_EVAL.json").read_text())
    target = json.loads((KIT / "ou_muse_news" / "MUSE_EVAL.json").read_text())
    value = privacy.privleak(target["mia_min_k"]["agg_value"], retain["mia_min_k"]["agg_value"])
    assert value == pytest.approx(summary("ou_muse_news_reflogs")["privleak"], abs=1e-6)


@pytest.mark.parametrize("run", RUNS)
def test_extraction_strength_per_row(run):
    found = rows(run, "extraction_strength")
    for row in found:
        first, last = row["scored_positions"]
        labels = row["input_ids"][first : last + 1]
        greedy = [a == b for a, b in zip(row["argmax_ids"], labels, strict=True)]
        assert len(greedy) == row["n_scored"]
        assert privacy.extraction_strength(greedy) == pytest.approx(float(row["score"]), abs=1e-12)
    mean = sum(float(r["score"]) for r in found) / len(found)
    assert mean == pytest.approx(summary(run)["extraction_strength"], abs=1e-12)
