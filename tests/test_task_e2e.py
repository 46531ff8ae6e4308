"""The tasks end to end through the real `lm_eval` CLI and `simple_evaluate()` on a tiny model."""

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.registry import MEMORIZATION_METRICS, per_set_metrics
from harness_ext.lm_eval_plugin.results import task_metrics
from tofu_tasks.eval_sets import EVAL_SETS
from tofu_tasks.metric_list import CORPUS_METRICS

# Every metric a run reports (BERTScore only when asked for).
ALL_METRICS = {m for m in per_set_metrics(EVAL_SETS, memorization=True) if "bertscore" not in m} | {
    m for m, _ in CORPUS_METRICS
}
PRIVACY_METRICS = {m for m in ALL_METRICS if m.startswith(("mia_", "privleak"))} | set(
    MEMORIZATION_METRICS
)
TOFU_METRICS = {m for m in ALL_METRICS if m.endswith(("rougeL_recall", "_prob", "truth_ratio"))}
ROWS = 2


def run_lm_eval(output: Path, model_args: str, *extra: str, metadata=None, check=True):
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
    if not check:
        return done
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = glob.glob(str(output / "**" / "results_*.json"), recursive=True)
    return json.loads(Path(results_file).read_text())


def metric_values(results: dict) -> dict:
    return task_metrics(results, "tofu_forget01_unlearn")


def assert_in_range(values: dict, expect_fq: bool) -> None:
    """Every metric is reported; numbers lie in [0, 1]; the rest say why they are missing."""
    assert set(values) == ALL_METRICS
    for name, value in values.items():
        if isinstance(value, str):
            assert value.startswith("N/A ("), name
        else:
            assert 0.0 <= value <= 1.0 + 1e-6, name
    for name in TOFU_METRICS | {"tofu_model_utility"} | {m for m in values if "token_entropy" in m}:
        assert isinstance(values[name], float), name
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
    """forget_prob of row 0 = exp(-mean NLL of the answer tokens and the EOS after them),
    computed here by hand as TOFU builds its labels: the ids of prompt + answer, EOS appended."""
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
    all_ids = tok(context + " " + doc["answer"])["input_ids"] + [tok.eos_token_id]
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

    from harness_ext.lm_eval_plugin.requests import continuation_token_counts

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


@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory):
    from harness_ext.testing.tiny_models import build_tiny_nli

    return build_tiny_nli(tmp_path_factory.mktemp("tiny-nli"))


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory, tiny_model_dir):
    """`lm-unlearn reference` on the tiny model: its pre-unlearning outputs and truth ratios."""
    path = tmp_path_factory.mktemp("reference") / "ref.json"
    cmd = [sys.executable, "-m", "harness_ext.commands.cli", "reference", "--model", str(tiny_model_dir),
           "--metadata", json.dumps({"max_rows_per_set": ROWS}), "--batch-size", "4",
           "--output", str(path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return path


def test_reference_file_records_what_is_needed_to_rerun(reference_file):
    payload = json.loads(reference_file.read_text())
    assert payload["format"] == "lm-unlearn-reference/1" and payload["prompt_format"] == "plain"
    assert len(payload["model"]["weights_sha256"]) == 64
    task = payload["tasks"]["tofu_forget01_unlearn"]
    assert (
        len(task["data_sha256"]) == 64
        and task["generation"]["prompt_plus_generation_max_tokens"] == 200
    )
    assert len(payload["rows"]) == 4 * ROWS
    assert all(r["generation"] is not None for r in payload["rows"])


def test_every_closer_look_metric_with_references_and_local_models(
    tmp_path, tiny_model_dir, reference_file, tiny_nli_dir
):
    from harness_ext.assets import minilm_dir

    metadata = {
        "pre_unlearning_reference": str(reference_file),
        "retain_reference": str(reference_file),
        "embedding_model": str(minilm_dir()),
        "nli_model": str(tiny_nli_dir),
    }
    results = run_lm_eval(tmp_path, f"pretrained={tiny_model_dir}", metadata=metadata)
    values = metric_values(results)
    assert_in_range(values, expect_fq=True)
    missing = {name: value for name, value in values.items() if isinstance(value, str)}
    # all computed but membership inference, which needs holdout rows (none in the local data);
    # memorisation comes from one request per answer token under hf
    assert set(missing) == PRIVACY_METRICS - set(MEMORIZATION_METRICS)
    plus_plus = missing.pop("mia_min_k_plus_plus_auc")  # under hf: the distribution is missing
    assert "next-token distribution" in plus_plus
    assert all(reason.startswith("N/A (no holdout") for reason in missing.values()), missing
    assert all(isinstance(values[name], float) for name in MEMORIZATION_METRICS), values
    # the model scored against its own pre-unlearning outputs
    assert values["real_authors_cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert values["world_facts_cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert values["forget_quality"] == 1.0  # same model, same truth ratios
    assert values["forget_truth_ratio"] + values["forget_truth_ratio_closer_look"] == pytest.approx(
        1.0
    )
    models = results["configs"]["tofu_forget01_unlearn"]["metadata"]["tofu"]["metric_models"]
    assert models["entailment"] == str(tiny_nli_dir)
    assert models["cosine_similarity"] == str(minilm_dir())


def test_reference_from_other_rows_is_refused(tmp_path, tiny_model_dir, reference_file):
    done = run_lm_eval(tmp_path, f"pretrained={tiny_model_dir}",
                       metadata={"max_rows_per_set": ROWS + 1, "pre_unlearning_reference": str(reference_file),
                                 "embedding_model": "none", "nli_model": "none"}, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "does not cover the evaluated rows" in done.stderr


def test_reference_with_another_prompt_format_is_refused(tmp_path, tiny_model_dir, reference_file):
    done = run_lm_eval(tmp_path, f"pretrained={tiny_model_dir}",
                       metadata={"prompt_format": "llama2", "retain_reference": str(reference_file)},
                       check=False)  # fmt: skip
    assert done.returncode != 0
    assert "scored with prompt format 'plain' but this run uses 'llama2'" in done.stderr


@pytest.mark.parametrize("limit", [4, 2])
def test_limit_keeps_rows_of_every_set_and_reports_empty_sets(tmp_path, tiny_model_dir, limit):
    """lm-eval's --limit takes the first N documents: the sets take turns, so --limit 4 scores
    one row of each set; with --limit 2 the sets left without rows say so."""
    results = run_lm_eval(
        tmp_path, f"pretrained={tiny_model_dir}", "--limit", str(limit),
        metadata={"max_rows_per_set": None, "embedding_model": "none", "nli_model": "none"},
    )  # fmt: skip
    values = metric_values(results)
    assert set(values) == ALL_METRICS  # no key dropped
    sets = ["forget", "retain", "real_authors", "world_facts"]
    for position, name in enumerate(sets):
        value = values[f"{name}_rougeL_recall"]
        if position < limit:
            assert isinstance(value, float), name
        else:
            assert value == "N/A (no rows)", name
    if limit == 4:
        assert isinstance(values["tofu_model_utility"], float)
    else:
        assert values["tofu_model_utility"].startswith("N/A (missing")


def test_chat_template_prompts_and_scored_tokens(tmp_path, tiny_model_dir):
    """The prompt is the tokenizer's own rendering with the generation prompt, the system
    instruction first as lm-eval places it; the newline that ends the template is prompt, not
    answer: the scored tokens are those after the prompt's positions, plus EOS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    system = "Answer in one sentence."
    run_lm_eval(
        tmp_path, f"pretrained={tiny_model_dir}", "--apply_chat_template",
        "--system_instruction", system,
        metadata={"embedding_model": "none", "nli_model": "none"},
    )  # fmt: skip
    (samples_file,) = glob.glob(str(tmp_path / "**" / "samples_*.jsonl"), recursive=True)
    samples = [json.loads(line) for line in Path(samples_file).read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for sample in samples:
        doc = sample["doc"]
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": doc["question"]},
        ]
        expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        assert prompt == expected and prompt.endswith("\n")
        prompt_ids = tok(prompt)["input_ids"]
        ids = tok(prompt + doc["answer"])["input_ids"] + [tok.eos_token_id]
        record = sample["model_utility"]["scored_answers"]
        assert record["tokens"][0] == len(ids) - len(prompt_ids)
        with torch.no_grad():
            log_probs = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
        positions = range(len(prompt_ids), len(ids))
        nll = -sum(log_probs[i - 1, ids[i]].item() for i in positions) / len(positions)
        assert record["mean_nll"][0] == pytest.approx(nll, abs=1e-4)
