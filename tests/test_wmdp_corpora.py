"""Unlearning on WMDP's corpora: `wmdp:<corpus>` read from a local folder (as RMU's code lays
them out) or the hub, cut as RMU's code cuts them, and RMU moving the steered layer's
activations on forget text to its steering vector while the retain text's stay where they were,
updating only the MLP down-projections it is told to."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness_ext.testing.tiny_models import build_tiny_llama
from tofu_tasks.wmdp.corpora import MIN_CHARACTERS, CorpusError, read_corpus
from unlearn_methods.config import UnlearnConfig
from unlearn_methods.data import UnlearnDataError, load_unlearn_data, retain_split_for
from unlearn_methods.losses.rmu import steering_direction
from unlearn_methods.train import dry_run, train

TOPICS = ["port scanners", "packet filters", "log rotation", "key exchange", "patch cycles",
          "access lists", "audit trails", "backup tapes"]  # fmt: skip
FORGET = [f"The manual on {t} says step {i} comes after the checksum of the archive is read."
          for i, t in enumerate(TOPICS * 2)]  # fmt: skip
RETAIN = [f"The garden guide says {t} grow best when the soil keeps some water in week {i}."
          for i, t in enumerate(["tomatoes", "beans", "roses", "tulips"] * 4)]  # fmt: skip
LAYER = 1  # decoder layer 1 of 4: hidden_states[2]


def write_corpus(folder: Path, name: str, texts: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": text}) for text in texts]
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpora")
    write_corpus(folder, "cyber-forget-corpus", [*FORGET, "too short to keep"])
    write_corpus(folder, "cyber-retain-corpus", RETAIN)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("four-layers"), tokenizer=tiny_tokenizer,
                            num_layers=4)  # fmt: skip


def test_corpora_are_read_and_cut_as_rmus_code_does(corpora, model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert read_corpus("cyber-forget-corpus", corpora)[-1] == {"text": "too short to keep"}
    data = load_unlearn_data("wmdp:cyber-forget-corpus", "wmdp:cyber-retain-corpus",
                             tokenizer=tokenizer, max_length=12, wmdp_corpora_dir=str(corpora))  # fmt: skip
    # one example per text longer than 50 characters: its tokens (with the tokenizer's special
    # tokens) cut to max_length
    assert len("too short to keep") <= MIN_CHARACTERS < min(len(t) for t in FORGET)
    expected = [tokenizer(text)["input_ids"][:12] for text in FORGET]
    assert [e["input_ids"] for e in data.forget] == expected
    assert len(data.retain) == len(RETAIN) and data.refusals == ()
    assert retain_split_for("wmdp:bio-forget-corpus") == "wikitext"  # RMU's retain text


def test_a_missing_or_gated_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match="cyber-forget-corpus.jsonl does not exist"):
        read_corpus("cyber-forget-corpus", tmp_path)
    with pytest.raises(CorpusError, match="unknown WMDP corpus 'chem-forget-corpus'"):
        read_corpus("chem-forget-corpus", tmp_path)
    monkeypatch.delenv("WMDP_CORPORA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CorpusError, match="it is gated; ask for access.*--wmdp-corpora-dir"):
        read_corpus("bio-forget-corpus")


def test_refusal_methods_and_bad_rmu_options_are_refused(corpora, model_dir, tmp_path):
    base = dict(model=str(model_dir), output_dir=str(tmp_path / "x"),
                forget="wmdp:cyber-forget-corpus", retain="wmdp:cyber-retain-corpus",
                wmdp_corpora_dir=str(corpora), max_length=32)  # fmt: skip
    with pytest.raises(UnlearnDataError, match="a text corpus has none"):
        dry_run(UnlearnConfig(method="IDK+AP", **base))
    with pytest.raises(ValueError, match="applies to --method RMU"):
        UnlearnConfig(method="GA+GD", rmu_update_layers="1", **base)
    with pytest.raises(ValueError, match="decoder layer numbers"):
        UnlearnConfig(method="RMU", rmu_update_layers="one", **base)


def activations(model_dir, texts: list[str]) -> torch.Tensor:
    """The steered layer's output on each text's real tokens, stacked."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, return_tensors="pt")
            rows.append(model(**inputs, output_hidden_states=True).hidden_states[LAYER + 1][0])
    return torch.cat(rows)


def test_rmu_steers_forget_activations_and_keeps_retain_ones(corpora, model_dir, tmp_path):
    steering = 4.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = train(UnlearnConfig(
            method="RMU", model=str(model_dir), output_dir=str(tmp_path / "rmu"),
            forget="wmdp:cyber-forget-corpus", retain="wmdp:cyber-retain-corpus",
            wmdp_corpora_dir=str(corpora), max_length=32, rmu_layer=LAYER,
            rmu_steering=steering, rmu_alpha=100.0, rmu_update_layers="0,1", max_steps=40,
            learning_rate=2e-2, per_device_train_batch_size=4, effective_batch_size=4,
            warmup_steps=0, bf16=False, disable_tqdm=True,
        ))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    before_f, after_f = activations(model_dir, FORGET), activations(out, FORGET)
    before_r, after_r = activations(model_dir, RETAIN), activations(out, RETAIN)
    target = steering * steering_direction(before_f.shape[-1], "cpu", torch.float32)
    gap_before = ((before_f - target) ** 2).mean().item()
    gap_after = ((after_f - target) ** 2).mean().item()
    moved_retain = ((after_r - before_r) ** 2).mean().item()
    print(f"forget MSE to c·u {gap_before:.4f} -> {gap_after:.4f}; retain moved {moved_retain:.4f}")
    # Measured (torch 2.13, one thread): 0.2535 -> 0.0283, retain moved 0.0004: the forget
    # activations went most of the way to c·u, the retain ones stayed where they were
    assert gap_after < 0.25 * gap_before
    assert moved_retain < 0.01 * gap_before
    cosine = torch.nn.functional.cosine_similarity(after_f, target.expand_as(after_f)).mean()
    assert (
        cosine > torch.nn.functional.cosine_similarity(before_f, target.expand_as(before_f)).mean()
    )
    # only layers 0 and 1's MLP down-projections were trained
    original = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    changed = {name for name, weight in AutoModelForCausalLM.from_pretrained(out).state_dict().items()
               if not torch.equal(weight, original[name])}  # fmt: skip
    assert changed == {"model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"}
