"""From per-sample numbers to reported metrics: set forms, MU-9, forget quality."""

import math

import pytest

from harness_ext.metrics import aggregate as scoring
from harness_ext.metrics.aggregate import SampleScore
from tofu_tasks.aggregations import summarize_tofu, tofu_model_utility
from tofu_tasks.eval_sets import EVAL_SETS, get_eval_set

SET_NAMES = [s.name for s in EVAL_SETS]

LN2, LN4 = math.log(2), math.log(4)


def sample(set_name, question="q", generation="Paris", answer_nll=LN2, base=LN2, pert=(LN4,) * 5):
    eval_set = get_eval_set(set_name)
    return SampleScore(eval_set, question, generation, "Paris", answer_nll, base, tuple(pert))


def test_forget_and_retain_use_absolute_probability_and_their_truth_ratio_forms():
    forget = sample("forget").metrics()
    retain = sample("retain").metrics()
    # R = exp(ln4 - ln2) = 2
    assert forget["raw_truth_ratio"] == pytest.approx(2.0)
    assert forget["truth_ratio"] == pytest.approx(0.5)  # min(2, 1/2)
    assert retain["truth_ratio"] == pytest.approx(0.5)  # 1 - 1/2
    assert forget["prob"] == retain["prob"] == pytest.approx(0.5)


def test_real_authors_probability_is_normalised_over_the_options():
    ra = sample("real_authors", pert=(LN4, LN4, LN4)).metrics()
    assert ra["prob"] == pytest.approx(0.5 / (0.5 + 0.75))


def test_summarize_reports_every_set_metric_and_mu9():
    samples = [sample(name, question=f"{name}?") for name in SET_NAMES]
    result = summarize_tofu(samples)
    # every utility component is 1 (rouge), 0.5 (prob, truth ratio) except RA/WF prob
    ra_prob = 0.5 / (0.5 + 5 * 0.25)
    expected = 9 / (3 * 1 + 3 * 2 + 2 + 2 * (1 / ra_prob))
    assert result["tofu_model_utility"] == pytest.approx(expected)
    assert result["forget_quality"].startswith("N/A")
    assert set(result) >= {f"{s}_{m}" for s in SET_NAMES for m in ("prob",)}


def test_model_utility_names_the_missing_components():
    value = tofu_model_utility({"retain": {"rougeL_recall": 1.0, "prob": 1.0, "truth_ratio": 1.0}})
    assert value == (
        "N/A (missing rougeL_recall of real_authors, world_facts; prob of real_authors, "
        "world_facts; truth_ratio of real_authors, world_facts)"
    )


def test_forget_quality_needs_a_reference_covering_every_row():
    items = [
        {"row": 0, "question": "a", "raw_truth_ratio": 1.0},
        {"row": 1, "question": "b", "raw_truth_ratio": 2.0},
    ]
    reference = [(0, "a", 1.0), (1, "b", 2.0), (2, "c", 9.0)]
    assert scoring.forget_quality_value(items, reference) == 1.0
    with pytest.raises(scoring.ReferenceMismatchError, match="1 of 2"):
        scoring.forget_quality_value(items, [(0, "a", 1.0)])
    assert scoring.forget_quality_value(items, None).startswith("N/A")


def test_reference_rows_are_matched_by_row_and_the_question_checked():
    # TOFU repeats a question: the row number, not the text, identifies a row
    wanted = [(3, "same?"), (7, "same?")]
    assert scoring.align_reference(wanted, [(7, "same?", "B"), (3, "same?", "A")], "ref") == [
        "A",
        "B",
    ]
    with pytest.raises(scoring.ReferenceMismatchError, match="row 3 holds another question"):
        scoring.align_reference([(3, "mine?")], [(3, "theirs?", "A")], "ref")
    # a reference without row numbers: by question, which must then be unique
    assert scoring.align_reference([(3, "q?")], [(None, "q?", "A")], "ref") == ["A"]
    with pytest.raises(scoring.ReferenceMismatchError, match="occurs 2 times"):
        scoring.align_reference(wanted, [(None, "same?", "A"), (None, "same?", "B")], "ref")


def test_forget_quality_aggregation_refuses_to_guess_without_reference():
    items = [{"raw_truth_ratio": 1.0, "reference_ratio": None}]
    assert scoring.aggregate_forget_quality(items).startswith("N/A (no retain reference")
    items = [{"raw_truth_ratio": r, "reference_ratio": r} for r in (0.5, 1.0, 2.0)]
    assert scoring.aggregate_forget_quality(items) == 1.0
