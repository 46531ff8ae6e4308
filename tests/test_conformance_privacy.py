"""open-unlearning's membership-inference, memorisation and paraphrased-question outputs on the
conformance kit's model, reproduced row by row.

`../shared/conformance/ou_forget01_plain_mia/` holds open-unlearning's (OU) per-row LOSS, ZLib,
Min-K%, Min-K%++ scores of the forget rows and of 40 rows the model never saw (retain_perturbed
360-399), with extraction strength and exact memorisation of the forget rows: Min-K%, Min-K%++,
ES and EM over the scored tokens without the final EOS, LOSS and ZLib with it.
`ou_forget01_plain_paraq/` is OU's evaluation with TOFU's paraphrased forget and retain
questions: answers the model did not memorise, so generations and ROUGE-L are tested on
imperfect text.

Through ``hf-unlearn`` every per-row number equals OU's within 1e-4. Through lm-eval's ``hf``
backend the per-token numbers come from one log-likelihood request per answer token: equal on
every row but the two whose answers hold a character the tokenizer splits into byte pieces
(their pieces share a log-prob), and Min-K%++ reads N/A (it needs the whole next-token
distribution).
"""

import json
import math
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.run import run_tasks

KIT = Path(__file__).resolve().parents[2] / "shared" / "conformance"
TASK = "tofu_forget01_unlearn"
OU_TEMPLATE = {"prompt": "Question: {question}\nAnswer: ", "answer": "{answer}"}
HOLDOUT_START = 360
TOLERANCE = 1e-4
ATTACKS = {  # our per-row key -> OU's
    "mia_loss_auc": "mia_loss",
    "mia_zlib_auc": "mia_zlib",
    "mia_min_k_auc": "mia_min_k",
    "mia_min_k_plus_plus_auc": "mia_min_k_plus_plus",
}
MEMORISATION = {
    "forget_extraction_strength": "extraction_strength",
    "forget_exact_memorization": "exact_memorization",
}
# holdout rows whose answers hold a curly quote that the kit's tokenizer splits into two byte
# tokens: no string ends between them, so per-token requests give their sum only
SPLIT_CHARACTER_ROWS = {("holdout", 362), ("holdout", 370)}
PARAQ_SETS = {"forget": "forget", "retain": "retain", "ra": "real_authors", "wf": "world_facts"}


def _model_args() -> dict:
    if not (KIT / "tiny-tofu-llama" / "model.safetensors").is_file():
        pytest.fail(f"the conformance kit is missing at {KIT}")
    return {"pretrained": str(KIT / "tiny-tofu-llama"), "dtype": "float32"}


@pytest.fixture(scope="module")
def mia_rows() -> dict:
    rows = {}
    for line in (KIT / "ou_forget01_plain_mia" / "rows.jsonl").open():
        row = json.loads(line)
        offset = HOLDOUT_START if row["set"] == "holdout" else 0
        rows[(row["set"], row["index"] + offset)] = row
    return rows


@pytest.fixture(scope="module", params=["hf-unlearn", "hf"])
def mia_run(request):
    metadata = {
        "prompt_template": OU_TEMPLATE,
        "sets": ["forget", "holdout"],
        "truth_ratio": False,
        "holdout": f"retain_perturbed[{HOLDOUT_START}:400]",
        "embedding_model": "none",
        "nli_model": "none",
    }
    results = run_tasks(
        _model_args(), [TASK], backend=request.param, metadata=metadata, batch_size=32, device="cpu"
    )
    return request.param, results


def test_membership_scores_equal_open_unlearnings_per_row(mia_rows, mia_run):
    backend, results = mia_run
    samples = results["samples"][TASK]
    assert {(s["doc"]["set"], s["doc"]["row"]) for s in samples} == set(mia_rows)
    for sample in samples:
        key = (sample["doc"]["set"], sample["doc"]["row"])
        ou = mia_rows[key]
        assert sample["doc"]["question"] == ou["question"]
        for ours, theirs in ATTACKS.items():
            score = sample[ours]["score"]
            where = f"{backend} {key} {ours}"
            if theirs == "mia_min_k_plus_plus" and backend == "hf":
                assert isinstance(score, str) and "next-token distribution" in score, where
            elif theirs == "mia_min_k" and key in SPLIT_CHARACTER_ROWS and backend == "hf":
                assert score == pytest.approx(ou[theirs]["score"], rel=0.05), where
                assert abs(score - ou[theirs]["score"]) > TOLERANCE, where  # not by chance
            else:
                assert score == pytest.approx(ou[theirs]["score"], abs=TOLERANCE), where
        for ours, theirs in MEMORISATION.items():
            if key[0] == "forget":
                assert sample[ours] == pytest.approx(ou[theirs]["score"], abs=1e-9), key


def test_membership_aucs_and_provenance(mia_run):
    backend, results = mia_run
    values = {k.split(",")[0]: v for k, v in results["results"][TASK].items() if "," in k}
    summary = json.loads((KIT / "ou_forget01_plain_mia" / "TOFU_SUMMARY.json").read_text())
    for ours, theirs in ATTACKS.items():
        if theirs == "mia_min_k_plus_plus" and backend == "hf":
            continue
        assert values[ours] == summary[theirs], ours
    assert values["forget_extraction_strength"] == summary["extraction_strength"]
    assert values["forget_exact_memorization"] == summary["exact_memorization"]
    token_scores = results["configs"][TASK]["metadata"]["tofu"]["token_scores"]
    if backend == "hf-unlearn":  # its answers carry the per-token numbers: no extra requests
        assert token_scores["per_token_requests"] == 0
        return
    probes = [p for row_probes in _probes_per_row().values() for p in row_probes]
    # one request per token but the final EOS, pieces of one character together
    assert token_scores["per_token_requests"] == len(probes)
    assert token_scores["shared_characters"] == sum(p.size for p in probes if p.size > 1)
    assert "inexact_requests" not in token_scores


def _read_rows() -> list[dict]:
    path = KIT / "ou_forget01_plain_mia" / "rows.jsonl"
    return [json.loads(line) for line in path.open()]


def _probes_per_row() -> dict:
    from transformers import AutoTokenizer

    from harness_ext.lm_eval_plugin.scored_tokens import eos_text, tofu_span, token_probes

    tokenizer = AutoTokenizer.from_pretrained(KIT / "tiny-tofu-llama")
    eos = eos_text(tokenizer)
    found = {}
    for row in _read_rows():
        prompt = OU_TEMPLATE["prompt"].format(question=row["question"])
        span = tofu_span(tokenizer, prompt, row["answer"], eos)
        offset = HOLDOUT_START if row["set"] == "holdout" else 0
        probes = token_probes(tokenizer, prompt, row["answer"], eos, span.count - 1)
        assert sum(p.size for p in probes) == row["mia_min_k"]["n_tokens"]
        found[(row["set"], row["index"] + offset)] = probes
    return found


def test_split_characters_are_the_only_shared_tokens():
    probes = _probes_per_row()
    assert all(p.exact for row_probes in probes.values() for p in row_probes)
    shared = {key for key, row_probes in probes.items() if any(p.size > 1 for p in row_probes)}
    assert shared == SPLIT_CHARACTER_ROWS


# ---------------------------------------------------------------------- paraphrased questions
@pytest.fixture(scope="module")
def paraq_rows() -> dict:
    rows = {}
    for line in (KIT / "ou_forget01_plain_paraq" / "rows.jsonl").open():
        row = json.loads(line)
        rows[(PARAQ_SETS[row["set"]], row["index"])] = row
    return rows


@pytest.fixture(scope="module", params=["hf-unlearn", "hf"])
def paraq_run(request):
    metadata = {
        "max_rows_per_set": {"retain": 40, "real_authors": 40, "world_facts": 40},
        "prompt_template": OU_TEMPLATE,
        "forget_question": "paraphrased",
        "retain_question": "paraphrased",
        "embedding_model": "none",
        "nli_model": "none",
    }
    results = run_tasks(
        _model_args(), [TASK], backend=request.param, metadata=metadata, batch_size=32, device="cpu"
    )
    return request.param, results


def test_paraphrased_questions_generations_and_rouge_equal_open_unlearnings(paraq_rows, paraq_run):
    backend, results = paraq_run
    samples = results["samples"][TASK]
    assert {(s["doc"]["set"], s["doc"]["row"]) for s in samples} == set(paraq_rows)
    imperfect = 0
    for sample in samples:
        doc, record = sample["doc"], sample["model_utility"]
        ou = paraq_rows[(doc["set"], doc["row"])]
        where = f"{backend} {doc['set']} row {doc['row']}"
        assert doc["question"] == ou["question"], where
        assert record["generation"] == ou["generation"], where
        assert record["rougeL_recall"] == ou["rougeL_recall"], where
        imperfect += ou["rougeL_recall"] < 1
        scored = record["scored_answers"]
        base = [ou["paraphrased_answer"]] if "paraphrased_answer" in ou else []
        answers = [ou["answer"], *base, *ou["perturbed_answers"]]
        assert scored["tokens"] == [a["n_tokens"] for a in answers], where
        for mine, theirs in zip(scored["mean_nll"], answers, strict=True):
            assert mine == pytest.approx(theirs["avg_loss"], abs=TOLERANCE), where
        if doc["set"] == "forget":
            es = sample["forget_extraction_strength"]
            assert es == pytest.approx(ou["extraction_strength"], abs=1e-9), where
    assert imperfect >= 70  # the forget and retain answers are mostly not reproduced


def test_paraphrased_set_values_equal_open_unlearnings(paraq_run):
    _, results = paraq_run
    values = {k.split(",")[0]: v for k, v in results["results"][TASK].items() if "," in k}
    evaluation = json.loads((KIT / "ou_forget01_plain_paraq" / "TOFU_EVAL.json").read_text())
    agg = {name: entry["agg_value"] for name, entry in evaluation.items() if entry}
    assert values["forget_extraction_strength"] == pytest.approx(
        agg["extraction_strength"], abs=1e-9
    )
    assert values["forget_rougeL_recall"] == pytest.approx(agg["forget_Q_A_ROUGE"], abs=1e-12)
    assert values["retain_rougeL_recall"] == pytest.approx(agg["retain_Q_A_ROUGE"], abs=1e-12)
    assert values["forget_prob"] == pytest.approx(agg["forget_Q_A_Prob"], abs=TOLERANCE)
    assert values["tofu_model_utility"] == pytest.approx(agg["model_utility"], abs=TOLERANCE)
    assert not math.isnan(values["forget_truth_ratio"])
