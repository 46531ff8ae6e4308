"""Token entropy, cosine similarity, entailment, MU-18 and forget efficacy on made-up inputs."""

import pytest

from harness_ext.metrics import aggregate as scoring
from harness_ext.metrics import tofu as M
from harness_ext.metrics.output_quality import GenerationRecord, OutputScorer, Unavailable
from tofu_tasks.aggregations import summarize_tofu, tofu_model_utility
from tofu_tasks.eval_sets import FORGET, REAL_AUTHORS, RETAIN, WORLD_FACTS, get_eval_set


def whitespace_tokens(text):
    return text.split()


def test_token_entropy_by_hand_with_a_whitespace_tokenizer():
    assert M.token_entropy(whitespace_tokens("a a a a")) == 0.0
    assert M.token_entropy(whitespace_tokens("a b a b")) == 0.5  # 1 bit / log2(4)
    assert M.token_entropy(whitespace_tokens("a b c d")) == 1.0
    assert M.token_entropy(["a"]) == 0.0
    assert M.token_entropy([]) == 0.0
    assert M.token_entropy(whitespace_tokens("b a b a")) == M.token_entropy(
        whitespace_tokens("a b a b")
    )


def test_cosine_is_clipped_at_zero():
    assert M.clipped_cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert M.clipped_cosine([1.0, 0.0], [0.0, 3.0]) == 0.0
    assert M.clipped_cosine([1.0, 0.0], [-1.0, 0.1]) == 0.0  # negative cosine -> 0
    assert M.clipped_cosine([0.0, 0.0], [1.0, 1.0]) == 0.0


def test_entailment_rouge_gate():
    assert M.entailment_score("entailment", 0.05) == 0.0
    assert M.entailment_score("entailment", 0.1) == 1.0
    assert M.entailment_score("ENTAILMENT", 0.9) == 1.0
    assert M.entailment_score("neutral", 1.0) == 0.0
    assert M.entailment_score("contradiction", 1.0) == 0.0


def test_premise_and_hypothesis_direction_per_set():
    assert FORGET.entailment == ("generation", "ground_truth")
    assert RETAIN.entailment == ("ground_truth", "generation")
    assert REAL_AUTHORS.entailment == WORLD_FACTS.entailment == ("pre_unlearning", "generation")
    assert (FORGET.output_reference, RETAIN.output_reference) == ("ground_truth", "ground_truth")
    assert REAL_AUTHORS.output_reference == "pre_unlearning"


class RecordingNli:
    """Stands in for an NLI model: records the pairs and calls every pair entailed."""

    name = "recording"

    def __init__(self):
        self.pairs = []

    def labels(self, premises, hypotheses):
        self.pairs += list(zip(premises, hypotheses, strict=True))
        return ["entailment"] * len(premises)


def test_scorer_sends_each_set_in_its_direction_and_applies_the_gate():
    nli = RecordingNli()
    scorer = OutputScorer(tokenizer=None, embedder=Unavailable("N/A (x)", "x"), nli=nli)
    records = [
        GenerationRecord(FORGET, "GEN-F", "GT-F", rouge_recall=0.5),
        GenerationRecord(RETAIN, "GEN-R", "GT-R", rouge_recall=0.5),
        GenerationRecord(REAL_AUTHORS, "GEN-A", "GT-A", rouge_recall=0.5, pre_unlearning="PRE-A"),
        GenerationRecord(WORLD_FACTS, "GEN-W", "GT-W", rouge_recall=0.05, pre_unlearning="PRE-W"),
        GenerationRecord(WORLD_FACTS, "GEN-X", "GT-X", rouge_recall=0.9),
    ]
    scores = scorer.score(records)
    assert nli.pairs == [("GEN-F", "GT-F"), ("GT-R", "GEN-R"), ("PRE-A", "GEN-A")]
    assert [s["entailment"] for s in scores[:4]] == [1.0, 1.0, 1.0, 0.0]  # gated below 0.1 ROUGE
    assert scores[4]["entailment"].startswith("N/A (no pre_unlearning_reference")
    assert scores[0]["cosine_similarity"] == "N/A (x)"
    assert scores[0]["token_entropy"].startswith("N/A")


def utility_values(value=0.5, low=None):
    values = {
        s: {m: value for m in scoring.CLOSER_LOOK_SET_METRICS}
        for s in ("retain", "real_authors", "world_facts")
    }
    if low is not None:
        values["retain"]["entailment"] = low
    return values


def test_mu18_is_the_harmonic_mean_of_18_components():
    assert tofu_model_utility(utility_values(), scoring.CLOSER_LOOK_SET_METRICS) == pytest.approx(
        0.5
    )
    # 17 components of 0.5 and one of 0.25: 18 / (17 * 2 + 4)
    mu = tofu_model_utility(utility_values(low=0.25), scoring.CLOSER_LOOK_SET_METRICS)
    assert mu == pytest.approx(18 / 38)
    assert tofu_model_utility(utility_values(low=0.0), scoring.CLOSER_LOOK_SET_METRICS) == 0.0


def test_mu18_names_components_it_lacks():
    values = utility_values()
    values["real_authors"]["entailment"] = "N/A (no NLI model; pass nli_model)"
    del values["world_facts"]["cosine_similarity"]
    mu = tofu_model_utility(values, scoring.CLOSER_LOOK_SET_METRICS)
    assert mu == "N/A (missing entailment of real_authors; cosine_similarity of world_facts)"


def test_forget_efficacy_by_hand():
    forget = {
        "rougeL_recall": 0.2,
        "prob": 0.4,
        "truth_ratio_closer_look": 0.6,
        "cosine_similarity": 0.8,
        "entailment": 1.0,
    }
    assert scoring.forget_efficacy_value(forget) == pytest.approx(0.4)
    forget["entailment"] = "N/A (no NLI model; pass nli_model)"
    assert scoring.forget_efficacy_value(forget) == "N/A (missing forget_entailment)"


def test_truth_ratio_forms_are_complements():
    assert M.truth_ratio_closer_look(4.0) == pytest.approx(0.75)
    assert M.truth_ratio_closer_look(0.25) + M.truth_ratio_forget(0.25) == pytest.approx(1.0)


def test_summarize_reports_both_forget_truth_ratio_forms_and_all_aggregates():
    samples = [
        scoring.SampleScore(
            get_eval_set(name),
            f"{name}?",
            "Paris",
            "Paris",
            0.7,
            0.7,
            (1.4,) * n,
            output_scores={"token_entropy": 0.9, "cosine_similarity": 0.8, "entailment": 1.0},
        )
        for name, n in (("forget", 5), ("retain", 5), ("real_authors", 3), ("world_facts", 3))
    ]
    result = summarize_tofu(samples)
    assert result["forget_truth_ratio"] + result["forget_truth_ratio_closer_look"] == pytest.approx(
        1.0
    )
    assert all(
        isinstance(result[k], float)
        for k in ("model_utility", "tofu_model_utility", "forget_efficacy")
    )
    assert result["forget_quality"].startswith("N/A")


def test_mean_or_reason_never_averages_a_missing_value_as_zero():
    assert scoring.mean_or_reason([0.5, 1.0]) == 0.75
    assert scoring.mean_or_reason([0.5, "N/A (no NLI model)"]) == "N/A (no NLI model)"
