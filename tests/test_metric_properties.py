"""Property-based tests (hypothesis) of the pure metric functions: ranges, symmetries,
invariances, zero handling, and no NaN on empty or one-token inputs."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from harness_ext.metrics import tofu as M

nll = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)
nlls = st.lists(nll, min_size=1, max_size=6)
ratio = st.floats(min_value=1e-30, max_value=1e30, allow_nan=False)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
words = st.lists(
    st.sampled_from(["the", "author", "was", "born", "in", "Paris", "1950", "a"]), max_size=30
)
vector = st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=3)


@given(ratio)
def test_forget_truth_ratio_is_symmetric_in_r_and_its_inverse(r):
    assert math.isclose(M.truth_ratio_forget(r), M.truth_ratio_forget(1.0 / r), rel_tol=1e-9)
    assert 0.0 <= M.truth_ratio_forget(r) <= 1.0
    assert math.isclose(M.truth_ratio_closer_look(r), 1.0 - M.truth_ratio_forget(r))


@given(ratio)
def test_utility_truth_ratio_range(r):
    value = M.truth_ratio_utility(r)
    assert 0.0 <= value <= 1.0
    if r <= 1.0:
        assert value == 0.0


@given(nll, nlls)
def test_truth_ratio_is_the_exponent_of_the_nll_gap(base, perturbed):
    r = M.raw_truth_ratio(base, perturbed)
    assert r > 0 and not math.isnan(r)
    assert math.isclose(math.log(r), sum(perturbed) / len(perturbed) - base, abs_tol=1e-9)


@given(nll, nlls)
def test_probabilities_are_probabilities(answer, perturbed):
    assert 0.0 < M.length_normalized_prob(answer) <= 1.0
    p = M.normalized_answer_prob(answer, perturbed)
    assert 0.0 < p <= 1.0
    # adding a worse option never raises the answer's share
    assert M.normalized_answer_prob(answer, [*perturbed, 60.0]) <= p + 1e-12


@given(st.lists(unit, min_size=1, max_size=18))
def test_harmonic_mean_range_and_zero_handling(values):
    h = M.harmonic_mean(values)
    assert not math.isnan(h)
    if 0.0 in values:
        assert h == 0.0
    else:
        assert min(values) - 1e-12 <= h <= max(values) + 1e-12
        assert h <= sum(values) / len(values) + 1e-12  # HM <= AM


@given(words, st.randoms())
def test_token_entropy_is_invariant_under_permutation(tokens, rng):
    shuffled = list(tokens)
    rng.shuffle(shuffled)
    value = M.token_entropy(tokens)
    assert math.isclose(value, M.token_entropy(shuffled), abs_tol=1e-12)
    assert 0.0 <= value <= 1.0 + 1e-12 and not math.isnan(value)
    assert math.copysign(1.0, value) == 1.0  # never -0.0


def test_token_entropy_of_empty_and_single_tokens():
    assert M.token_entropy([]) == 0.0
    assert M.token_entropy(["a"]) == 0.0


@given(words, words)
@settings(max_examples=50, deadline=None)
def test_rouge_recall_range_and_empty_generations(generation, target):
    value = M.rouge_l_recall(" ".join(generation), " ".join(target))
    assert 0.0 <= value <= 1.0 and not math.isnan(value)
    if target:
        assert M.rouge_l_recall(" ".join(target), " ".join(target)) == 1.0


@given(vector, vector)
def test_clipped_cosine_is_symmetric_and_in_unit_range(u, v):
    value = M.clipped_cosine(u, v)
    assert 0.0 <= value <= 1.0 + 1e-9
    assert math.isclose(value, M.clipped_cosine(v, u), abs_tol=1e-12)


@given(st.tuples(unit, unit, unit, unit, unit))
def test_forget_efficacy_range(five):
    assert -1e-12 <= M.forget_efficacy(*five) <= 1.0 + 1e-12


@given(st.lists(st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=40))
@settings(deadline=None)
def test_forget_quality_of_identical_samples_is_one(ratios):
    assert M.forget_quality(ratios, ratios) == 1.0
