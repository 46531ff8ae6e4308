"""Prompt-format resolution and retain-reference loading."""

import json

import pytest

from harness_ext.metrics.references import ReferenceError
from harness_ext.prompts import PromptFormatError, resolve_prompt_format
from tofu_tasks.reference_files import load_reference, write_reference_file


def test_default_formats():
    assert resolve_prompt_format(None, apply_chat_template=False).name == "plain"
    assert resolve_prompt_format(None, apply_chat_template=True).name == "chat"
    assert resolve_prompt_format("phi", apply_chat_template=False).name == "phi"


def test_conflicting_formats_are_errors():
    with pytest.raises(PromptFormatError, match="conflicts with --apply_chat_template"):
        resolve_prompt_format("llama2", apply_chat_template=True)
    with pytest.raises(PromptFormatError, match="needs --apply_chat_template"):
        resolve_prompt_format("chat", apply_chat_template=False)
    with pytest.raises(PromptFormatError, match="unknown prompt_format"):
        resolve_prompt_format("alpaca", apply_chat_template=False)


def test_legacy_formats_match_tofus_training_text():
    llama = resolve_prompt_format("llama2", False)
    phi = resolve_prompt_format("phi", False)
    assert (
        llama.prompt.format(question="Q?") + llama.answer.format(answer="A.")
        == "[INST] Q? [/INST]A."
    )
    assert (
        phi.prompt.format(question="Q?") + phi.answer.format(answer="A.")
        == "Question: Q?\nAnswer: A."
    )


def write_run(directory, ratios, prompt_format="plain", date="2026-01-01T00-00-00.0"):
    """A results file and a samples file shaped as the tofu tasks write them."""
    directory.mkdir(parents=True, exist_ok=True)
    results = {
        "configs": {
            "tofu_forget01_unlearn": {"metadata": {"tofu": {"prompt_format": prompt_format}}}
        }
    }
    (directory / f"results_{date}.json").write_text(json.dumps(results))
    lines = [
        {
            "doc": {"set": "forget", "question": q},
            "model_utility": {"set": "forget", "generation": f"said {q}", "raw_truth_ratio": r},
            "forget_quality": {"question": q, "raw_truth_ratio": r, "reference_ratio": None},
        }
        for q, r in ratios.items()
    ] + [
        {
            "doc": {"set": "real_authors", "question": "who?"},
            "model_utility": {
                "set": "real_authors",
                "generation": "Shakespeare",
                "raw_truth_ratio": 3.0,
            },
        }
    ]
    samples = directory / f"samples_tofu_forget01_unlearn_{date}.jsonl"
    samples.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return directory / f"results_{date}.json", samples


def test_reference_from_results_samples_or_directory(tmp_path):
    results, samples = write_run(tmp_path / "run", {"a?": 0.5, "b?": 2.0}, prompt_format="llama2")
    for path in (results, samples, tmp_path / "run"):
        reference = load_reference(path)
        assert reference.forget_ratios == [(None, "a?", 0.5), (None, "b?", 2.0)]
        assert reference.generations("real_authors") == [(None, "who?", "Shakespeare")]
        assert reference.prompt_format == "llama2"
        assert reference.kind == "lm-eval-samples"


def test_reference_file_round_trip(tmp_path):
    _, samples = write_run(tmp_path / "run", {"a?": 0.5})
    loaded = load_reference(samples)
    path = write_reference_file(
        tmp_path / "ref.json",
        list(loaded.rows),
        {"prompt_format": "plain", "model": {"hub_id": "x"}},
    )
    again = load_reference(path)
    assert again.kind == "reference-file" and again.rows == loaded.rows
    assert again.describe()["model"] == {"hub_id": "x"}
    assert not list(tmp_path.glob(".ref.json.*"))  # written atomically, no temporary left


def test_results_without_samples_asks_for_log_samples(tmp_path):
    results, samples = write_run(tmp_path / "run", {"a?": 0.5})
    samples.unlink()
    with pytest.raises(ReferenceError, match="--log_samples"):
        load_reference(results)


def test_unusable_references_are_refused(tmp_path):
    with pytest.raises(ReferenceError, match="does not exist"):
        load_reference(tmp_path / "missing.jsonl")
    (tmp_path / "other.jsonl").write_text(json.dumps({"doc": {}, "acc": 1}) + "\n")
    with pytest.raises(ReferenceError, match="no tofu rows found"):
        load_reference(tmp_path / "other.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceError, match="neither a legacy TOFU log directory"):
        load_reference(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReferenceError, match="not a recognised reference"):
        load_reference(tmp_path / "notes.txt")


def test_legacy_reference_knows_its_prompt_format(legacy_logs):
    assert load_reference(legacy_logs / "phi_retain90_wd0.01").prompt_format == "phi"
    reference = load_reference(legacy_logs / "llama2-7b_retain99_wd0.01" / "eval_log_forget.json")
    assert reference.prompt_format == "llama2" and len(reference.forget_ratios) == 40
