"""Parity with the original TOFU evaluation logs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

from harness_ext.metrics.tofu import rouge_l_recall
from tofu_tasks.aggregations import summarize_tofu as summarize
from tofu_tasks.eval_sets import CLOSER_LOOK_SET_METRICS, EVAL_SETS
from tofu_tasks.legacy_logs import directory_samples
from tofu_tasks.reference_files import load_reference

LOG_DIRS = [
    "llama2-7b_full_wd0.01",
    "llama2-7b_retain90_wd0.01",
    "llama2-7b_retain95_wd0.01",
    "llama2-7b_retain99_wd0.01",
    "phi_full_wd0.01",
    "phi_retain90_wd0.01",
]


@pytest.mark.parametrize("log_dir", LOG_DIRS)
def test_rouge_l_recall_matches_every_logged_row(legacy_logs, log_dir):
    checked = 0
    for eval_set in EVAL_SETS:
        log = json.loads((legacy_logs / log_dir / eval_set.legacy_log_file).read_text())
        for row, (_prompt, generation, target) in log["generated_text"].items():
            assert rouge_l_recall(generation, target) == pytest.approx(
                log["rougeL_recall"][row], abs=1e-12
            ), f"{log_dir}/{eval_set.legacy_log_file} row {row}"
            checked += 1
    forget_rows = {"retain95": 200, "retain99": 40}.get(log_dir.split("_")[1], 300)
    assert checked == forget_rows + 300 + 100 + 117


def _independent_mu9(log_dir):
    """MU-9 written out from the raw logs with numpy/scipy, as TOFU aggregates it."""
    values = []
    for name in (
        "eval_log.json",
        "eval_real_author_wo_options.json",
        "eval_real_world_wo_options.json",
    ):
        log = json.loads((log_dir / name).read_text())
        gt = np.array(list(log["avg_gt_loss"].values()))
        para = np.array(list(log["avg_paraphrased_loss"].values()))
        pert = np.array(list(log["average_perturb_loss"].values()))
        if name == "eval_log.json":
            prob = np.exp(-gt).mean()
        else:
            prob = (np.exp(-gt) / (np.exp(-gt) + np.exp(-pert).sum(-1))).mean()
        ratio = np.exp(pert.mean(-1) - para)
        values += [
            prob,
            np.mean(list(log["rougeL_recall"].values())),
            np.maximum(0, 1 - 1 / ratio).mean(),
        ]
    return hmean(values)


def test_model_utility_of_llama2_full_is_tofus_number(legacy_logs):
    log_dir = legacy_logs / "llama2-7b_full_wd0.01"
    mu = summarize(directory_samples(log_dir))["tofu_model_utility"]
    assert mu == pytest.approx(_independent_mu9(log_dir), rel=1e-12)
    assert mu == pytest.approx(0.6227, abs=5e-4)


def test_forget_quality_of_full_against_retain90_is_the_ks_p_value(legacy_logs):
    full = legacy_logs / "llama2-7b_full_wd0.01"
    retain = legacy_logs / "llama2-7b_retain90_wd0.01"
    reference = load_reference(retain)
    fq = summarize(directory_samples(full), reference.forget_ratios)["forget_quality"]
    logged = [
        list(json.loads((d / "eval_log_forget.json").read_text())["truth_ratio"].values())
        for d in (full, retain)
    ]
    assert fq == pytest.approx(ks_2samp(*logged).pvalue, rel=1e-9)
    assert f"{fq:.2e}" == "1.83e-21"  # the README's number
    assert summarize(directory_samples(retain), reference.forget_ratios)["forget_quality"] == 1.0
    assert reference.prompt_format == "llama2" and len(reference.forget_ratios) == 300


def test_aggregate_cli_prints_every_metric_as_json(legacy_logs, tiny_model_dir):
    full = legacy_logs / "llama2-7b_full_wd0.01"
    retain = legacy_logs / "llama2-7b_retain90_wd0.01"
    out = subprocess.run(
        [sys.executable, "-m", "harness_ext.commands.cli", "aggregate", "--legacy-logs", str(full),
         "--reference-logs", str(retain), "--pre-unlearning-logs", str(full),
         "--tokenizer", str(tiny_model_dir), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    metrics = json.loads(out.stdout)
    per_set = {f"{s.name}_{m}" for s in EVAL_SETS for m in CLOSER_LOOK_SET_METRICS}
    aggregates = {"tofu_model_utility", "model_utility", "forget_efficacy", "forget_quality"}
    assert set(metrics) == per_set | aggregates | {
        "forget_truth_ratio_closer_look",
        "metric_models",
    }
    assert metrics["tofu_model_utility"] == pytest.approx(0.6227, abs=5e-4)
    assert metrics["forget_quality"] < 1e-10
    for s in EVAL_SETS:
        assert 0 < metrics[f"{s.name}_token_entropy"] <= 1
        assert 0 < metrics[f"{s.name}_cosine_similarity"] <= 1 + 1e-6
        # no NLI model offline: reported as unavailable, never as a number
        assert metrics[f"{s.name}_entailment"] == "N/A (no NLI model; pass nli_model)"
    # the model is its own pre-unlearning reference on RA/WF
    assert metrics["real_authors_cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["model_utility"].startswith("N/A (missing entailment of retain")
    assert "packaged fallback" in metrics["metric_models"]["cosine_similarity"]


def test_a_reference_from_other_rows_is_refused(legacy_logs):
    # retain99's log holds forget01's 40 rows; llama2 full's holds forget10's first 300.
    reference = load_reference(legacy_logs / "llama2-7b_retain99_wd0.01")
    # matched by row: forget10's row 0 is another question than forget01's row 0
    with pytest.raises(ValueError, match="row 0 holds another question"):
        summarize(directory_samples(legacy_logs / "llama2-7b_full_wd0.01"), reference.forget_ratios)


def test_the_readmes_table_of_the_llama2_logs_is_what_aggregate_computes(legacy_logs):
    """The README's per-set table, recomputed with the command it names (same tokenizer file,
    the packaged MiniLM embeddings, no NLI model)."""
    import os
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    vocab = Path(os.environ.get("LM_UNLEARN_VOCAB_DIR") or root / ".venv" / "vocab")
    full = legacy_logs / "llama2-7b_full_wd0.01"
    out = subprocess.run(
        [sys.executable, "-m", "harness_ext.commands.cli", "aggregate", "--legacy-logs", str(full),
         "--reference-logs", str(legacy_logs / "llama2-7b_retain90_wd0.01"),
         "--pre-unlearning-logs", str(full),
         "--tokenizer", str(vocab / "ggml-vocab-llama-spm.gguf"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    metrics = json.loads(out.stdout)
    readme = (root / "docs" / "metrics.md").read_text()
    table = (
        re.search(r"\| set \| ROUGE-L \|.*?\n\n", readme, re.S).group(0).strip().splitlines()[2:]
    )
    names = {"forget (forget10)": "forget", "retain": "retain", "real authors": "real_authors",
             "world facts": "world_facts"}  # fmt: skip
    columns = ("rougeL_recall", "prob", "truth_ratio", "token_entropy", "cosine_similarity")
    assert len(table) == 4
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, cell in zip(columns, cells[1:], strict=False):
            assert f"{metrics[f'{names[cells[0]]}_{column}']:.4f}" == cell, (cells[0], column)
        assert cells[-1] == "N/A" and metrics[f"{names[cells[0]]}_entailment"].startswith("N/A")
    assert f"{metrics['tofu_model_utility']:.4f}" in readme.split("| world facts |")[1][:200]
    assert f"{metrics['forget_quality']:.2e}" in readme.split("| world facts |")[1][:300]
