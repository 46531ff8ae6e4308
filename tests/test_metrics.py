"""Metric functions against values computed by hand."""

import math

import pytest
from scipy.stats import ks_2samp

from harness_ext.metrics import tofu as M


def test_rouge_l_recall_counts_the_longest_common_subsequence_of_the_target():
    # target has 6 tokens, "the cat sat" is a subsequence of length 3 -> recall 3/6
    assert M.rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(0.5)
    assert M.rouge_l_recall("the cat sat on the mat today", "the cat sat on the mat") == 1.0
    assert M.rouge_l_recall("", "the cat") == 0.0


def test_rouge_l_recall_uses_the_porter_stemmer():
    assert M.rouge_l_recall("running dogs", "runs dog") == 1.0


def test_mean_nll_divides_the_summed_log_probability_by_the_token_count():
    assert M.mean_nll(-6.0, 3) == 2.0
    with pytest.raises(ValueError):
        M.mean_nll(-1.0, 0)


def test_length_normalized_prob_is_exp_of_minus_mean_nll():
    assert M.length_normalized_prob(math.log(2)) == pytest.approx(0.5)


def test_normalized_answer_prob_compares_with_the_perturbed_answers():
    # p(answer) = 1/2, two perturbed answers with p = 1/4 each -> 0.5 / (0.5 + 0.5)
    assert M.normalized_answer_prob(math.log(2), [math.log(4), math.log(4)]) == pytest.approx(0.5)


def test_raw_truth_ratio_is_exp_of_mean_perturbed_minus_base():
    assert M.raw_truth_ratio(1.0, [2.0, 4.0]) == pytest.approx(math.exp(2.0))
    assert M.log_truth_ratio(1.0, [2.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        M.raw_truth_ratio(1.0, [])


def test_forget_truth_ratio_is_symmetric_in_r_and_one_over_r():
    assert M.truth_ratio_forget(4.0) == 0.25
    assert M.truth_ratio_forget(0.25) == 0.25
    assert M.truth_ratio_forget(1.0) == 1.0


def test_utility_truth_ratio_is_clipped_at_zero():
    assert M.truth_ratio_utility(4.0) == 0.75
    assert M.truth_ratio_utility(0.5) == 0.0


def test_harmonic_mean_and_its_zero_rule():
    assert M.harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(12 / 7)
    assert M.harmonic_mean([0.3, 0.0]) == 0.0
    with pytest.raises(ValueError):
        M.harmonic_mean([])
    with pytest.raises(ValueError):
        M.harmonic_mean([1.0, -0.5])


def test_forget_quality_is_the_ks_p_value():
    a = [0.1, 0.2, 0.3, 0.4, 0.5]
    b = [0.6, 0.7, 0.8, 0.9, 1.0]
    assert M.forget_quality(a, a) == 1.0
    assert M.forget_quality(a, b) == pytest.approx(ks_2samp(a, b).pvalue)
    assert M.forget_quality(a, b) < 0.01
