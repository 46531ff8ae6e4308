"""The auxiliary models behind cosine similarity, entailment and BERTScore, offline."""

import pytest

from harness_ext.assets import minilm_dir
from harness_ext.metrics import output_quality as O


@pytest.fixture(scope="module")
def embedder():
    return O.load_embedder(str(minilm_dir()), device="cpu")


def test_cosine_with_the_packaged_minilm(embedder):
    same, para, other = embedder.cosine(
        ["The capital of France is Paris."] * 3,
        [
            "The capital of France is Paris.",
            "Paris is the capital city of France.",
            "Bananas are a yellow fruit.",
        ],
    )
    assert same == pytest.approx(1.0, abs=1e-5)
    assert para > 0.8 > other >= 0.0


def test_default_embedding_model_falls_back_and_says_so():
    loaded = O.load_embedder(None, device="cpu")  # the paper's model is not reachable offline
    assert "packaged fallback" in loaded.name and "could not be loaded" in loaded.note


def test_explicit_model_that_cannot_load_is_an_error(tmp_path):
    with pytest.raises(O.OutputScoringError, match="embedding model"):
        O.load_embedder(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(O.OutputScoringError, match="NLI model"):
        O.load_nli(str(tmp_path / "missing"), device="cpu")


def test_missing_nli_model_is_unavailable_never_zero():
    nli = O.load_nli(None, device="cpu")
    assert isinstance(nli, O.Unavailable)
    assert nli.value == "N/A (no NLI model; pass nli_model)"
    assert "sileod/deberta-v3-base-tasksource-nli" in nli.detail


def test_nli_plumbing_with_a_locally_built_classifier(tmp_path):
    from harness_ext.testing.tiny_models import build_tiny_nli

    nli = O.load_nli(str(build_tiny_nli(tmp_path / "nli")), device="cpu")
    labels = nli.labels(["A cat sat.", "Paris is big."] * 3, ["A cat is sitting.", "Rome."] * 3)
    assert len(labels) == 6 and set(labels) <= {"entailment", "neutral", "contradiction"}


def test_a_classifier_without_an_entailment_label_is_refused(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
        id2label={0: "positive", 1: "negative"},
        label2id={"positive": 0, "negative": 1},
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path)
    with pytest.raises(O.OutputScoringError, match="not an NLI classifier"):
        O.load_nli(str(tmp_path), device="cpu")


def test_bertscore_with_the_packaged_minilm():
    scorer = O.load_bertscore(str(minilm_dir()), device="cpu")
    same, other = scorer.f1(
        ["Paris is the capital.", "Paris is the capital."],
        ["Paris is the capital.", "Cats eat fish."],
    )
    assert same == pytest.approx(1.0, abs=1e-4) and other < same
