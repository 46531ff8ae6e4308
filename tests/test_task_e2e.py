"""The tasks end to end through the real `lm_eval` CLI and `simple_evaluate()` on a tiny model."""

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext.lm_eval_registry import per_set_metrics
from harness_ext.runs import task_metrics

SET_METRICS = set(per_set_metrics())
ALL_METRICS = SET_METRICS | {"tofu_model_utility", "forget_quality"}
ROWS = 2


def run_lm_eval(output: Path, model_args: str, *extra: str, metadata=None) -> dict:
    metadata = {"max_rows_per_set": ROWS, **(metadata or {})}
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "run",
        "--model",
        "hf",
        "--model_args",
        model_args,
        "--tasks",
        "tofu_forget01_unlearn",
        "--batch_size",
        "4",
        "--output_path",
        str(output),
        "--log_samples",
        "--metadata",
        json.dumps(metadata),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = glob.glob(str(output / "**" / "results_*.json"), recursive=True)
    return json.loads(Path(results_file).read_text())


def metric_values(results: dict) -> dict:
    return task_metrics(results, "tofu_forget01_unlearn")


def assert_in_range(values: dict, expect_fq: bool) -> None:
    assert set(values) == ALL_METRICS
    for name in SET_METRICS | {"tofu_model_utility"}:
        assert 0.0 <= values[name] <= 1.0, name
    if expect_fq:
        assert 0.0 <= values["forget_quality"] <= 1.0
    else:
        assert values["forget_quality"].startswith("N/A (no retain reference")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("plain")
    return out, run_lm_eval(out, f"pretrained={tiny_model_dir}")


def test_plain_cli_run_reports_every_metric(plain_run):
    _, results = plain_run
    assert_in_range(metric_values(results), expect_fq=False)
    tofu = results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]
    assert tofu["prompt_format"] == "plain"
    assert tofu["rows_per_set"] == {
        "forget": ROWS,
        "retain": ROWS,
        "real_authors": ROWS,
        "world_facts": ROWS,
    }
    assert len(tofu["data_sha256"]) == 64


def test_probabilities_match_a_direct_forward_pass(plain_run, tiny_model_dir):
    """forget_prob of row 0 = exp(-mean NLL of the answer tokens), computed here by hand."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = plain_run
    (samples_file,) = glob.glob(str(out / "**" / "samples_*.jsonl"), recursive=True)
    sample = json.loads(Path(samples_file).read_text().splitlines()[0])
    doc = sample["doc"]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    context = f"Question: {doc['question']}\nAnswer:"
    ctx_ids = tok(context)["input_ids"]
    all_ids = tok(context + " " + doc["answer"])["input_ids"]
    with torch.no_grad():
        logprobs = model(torch.tensor([all_ids])).logits[0].log_softmax(-1)
    answer = range(len(ctx_ids), len(all_ids))
    nll = -sum(logprobs[i - 1, all_ids[i]].item() for i in answer) / len(answer)
    assert sample["forget_prob"] == pytest.approx(math.exp(-nll), rel=1e-4)


def test_lora_adapter_run_with_retain_reference(plain_run, tmp_path, tiny_model_dir, tiny_lora_dir):
    reference_dir, base_results = plain_run
    results = run_lm_eval(
        tmp_path,
        f"pretrained={tiny_model_dir},peft={tiny_lora_dir}",
        metadata={"retain_reference": str(reference_dir)},
    )
    values = metric_values(results)
    assert_in_range(values, expect_fq=True)
    assert values["forget_prob"] != metric_values(base_results)["forget_prob"]  # adapter applied


def test_chat_template_run(tmp_path, tiny_model_dir):
    results = run_lm_eval(tmp_path, f"pretrained={tiny_model_dir}", "--apply_chat_template")
    assert_in_range(metric_values(results), expect_fq=False)
    assert (
        results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]["prompt_format"] == "chat"
    )


def test_simple_evaluate_with_auto_batch_size(tiny_model_dir):
    from lm_eval import simple_evaluate

    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model_dir}",
        tasks=["tofu_forget01_unlearn"],
        batch_size="auto",
        device="cpu",
        metadata={"max_rows_per_set": 1, "prompt_format": "llama2"},
        bootstrap_iters=0,
    )
    values = metric_values(results)
    assert_in_range(values, expect_fq=False)
    assert (
        results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]["prompt_format"] == "llama2"
    )


def test_token_counts_match_lm_evals_own_split(tiny_model_dir):
    from lm_eval.models.huggingface import HFLM

    from tofu_tasks.task import continuation_token_counts

    lm = HFLM(pretrained=str(tiny_model_dir), batch_size=1, device="cpu")
    pairs = [
        ("Question: Who?\nAnswer:", " Basil Mahfouz."),
        ("Question: Who?\n", "Answer: Me"),
        ("[INST] Who? [/INST]", "Basil"),
        ("ctx with trailing space ", "word"),
    ]
    expected = [len(lm._encode_pair(c, a)[1]) for c, a in pairs]
    assert continuation_token_counts(lm.tokenizer, pairs) == expected


def test_conflicting_prompt_options_fail_before_scoring(tmp_path, tiny_model_dir):
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={tiny_model_dir}",
        "--tasks",
        "tofu_forget01_unlearn",
        "--metadata",
        json.dumps({"max_rows_per_set": 1, "prompt_format": "llama2"}),
        "--apply_chat_template",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode != 0
    assert "conflicts with --apply_chat_template" in done.stderr
