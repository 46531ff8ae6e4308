"""open-unlearning's own per-row outputs on the conformance kit's model, reproduced row by row.

`../shared/conformance/` holds a tiny Llama that memorised 160 TOFU rows and open-unlearning's
(OU) evaluation of it, per row. OU's plain template is `"Question: {q}\\nAnswer: "` + answer; given
as `prompt_template`, the task scores OU's exact strings and tokens, through `hf` and `hf-unlearn`.
Tolerances: token counts, generations and ROUGE exact; per-answer mean NLL, probabilities, truth
ratios, set means and MU-9 within 1e-4 (float32 on CPU; OU pads batches of 32 differently, which
moves the last bits).
"""

import json
import math
from pathlib import Path

import pytest

from harness_ext.lm_eval_plugin.run import run_tasks

KIT = Path(__file__).resolve().parents[2] / "shared" / "conformance"
TASK = "tofu_forget01_unlearn"
OU_TEMPLATE = {"prompt": "Question: {question}\nAnswer: ", "answer": "{answer}"}
SETS = {"forget": "forget", "retain": "retain", "ra": "real_authors", "wf": "world_facts"}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def kit():
    if not (KIT / "tiny-tofu-llama" / "model.safetensors").is_file():
        pytest.fail(f"the conformance kit is missing at {KIT}")
    rows = [json.loads(line) for line in (KIT / "ou_forget01_plain" / "rows.jsonl").open()]
    evaluation = json.loads((KIT / "ou_forget01_plain" / "TOFU_EVAL.json").read_text())
    return {(SETS[r["set"]], r["index"]): r for r in rows}, evaluation


@pytest.fixture(scope="module", params=["hf", "hf-unlearn"])
def scored(request):
    metadata = {
        "max_rows_per_set": {"retain": 40, "real_authors": 40, "world_facts": 40},
        "prompt_template": OU_TEMPLATE,
        "embedding_model": "none",
        "nli_model": "none",
    }
    model_args = {"pretrained": str(KIT / "tiny-tofu-llama"), "dtype": "float32"}
    results = run_tasks(
        model_args, [TASK], backend=request.param, metadata=metadata, batch_size=32, device="cpu"
    )
    return request.param, results


def _answers(row: dict) -> list[dict]:
    base = [row["paraphrased_answer"]] if "paraphrased_answer" in row else []
    return [row["answer"], *base, *row["perturbed_answers"]]


def test_every_row_equals_open_unlearnings(kit, scored):
    rows, _ = kit
    backend, results = scored
    samples = results["samples"][TASK]
    assert len(samples) == 160 and {(s["doc"]["set"], s["doc"]["row"]) for s in samples} == set(
        rows
    )
    worst = 0.0
    for sample in samples:
        doc, record = sample["doc"], sample["model_utility"]
        ou = rows[(doc["set"], doc["row"])]
        where = f"{backend} {doc['set']} row {doc['row']}"
        assert doc["question"] == ou["question"], where
        assert record["generation"] == ou["generation"], where
        assert record["rougeL_recall"] == ou["rougeL_recall"], where
        answers = _answers(ou)
        scored_answers = record["scored_answers"]
        assert scored_answers["tokens"] == [a["n_tokens"] for a in answers], where
        for mine, theirs in zip(scored_answers["mean_nll"], answers, strict=True):
            worst = max(worst, abs(mine - theirs["avg_loss"]))
            assert mine == pytest.approx(theirs["avg_loss"], abs=TOLERANCE), where
        if doc["set"] in ("forget", "retain"):
            assert record["prob"] == pytest.approx(ou["answer"]["prob"], abs=TOLERANCE), where
        else:
            assert record["prob"] == pytest.approx(ou["prob_normalised"], abs=TOLERANCE), where
        # OU's per-row score is wrong/correct = 1/R
        assert 1 / record["raw_truth_ratio"] == pytest.approx(
            ou["truth_ratio"], rel=TOLERANCE, abs=1e-12
        ), where
    print(f"{backend}: largest per-answer mean-NLL difference {worst:.2e}")


def test_set_means_and_model_utility_equal_open_unlearnings(kit, scored):
    _, evaluation = kit
    _, results = scored
    values = {k.split(",")[0]: v for k, v in results["results"][TASK].items() if "," in k}
    agg = {name: entry["agg_value"] for name, entry in evaluation.items() if entry}
    expected = {
        "forget_prob": agg["forget_Q_A_Prob"],
        "forget_rougeL_recall": agg["forget_Q_A_ROUGE"],
        "forget_truth_ratio": agg["forget_truth_ratio"],
        "retain_prob": agg["retain_Q_A_Prob"],
        "retain_rougeL_recall": agg["retain_Q_A_ROUGE"],
        "retain_truth_ratio": agg["retain_Truth_Ratio"],
        "real_authors_prob": agg["ra_Q_A_Prob_normalised"],
        "real_authors_rougeL_recall": agg["ra_Q_A_ROUGE"],
        "real_authors_truth_ratio": agg["ra_Truth_Ratio"],
        "world_facts_prob": agg["wf_Q_A_Prob_normalised"],
        "world_facts_rougeL_recall": agg["wf_Q_A_ROUGE"],
        "world_facts_truth_ratio": agg["wf_Truth_Ratio"],
        "tofu_model_utility": agg["model_utility"],
    }
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, abs=TOLERANCE), name
    assert not math.isnan(values["tofu_model_utility"])


def test_the_projects_plain_format_scores_the_first_answer_token(kit, tmp_path):
    """`plain` keeps the space with the answer (`Answer:` + ` {answer}`), so the first answer
    token is scored: one token more than OU's template on every answer of this tokenizer."""
    from transformers import AutoTokenizer

    from harness_ext.lm_eval_plugin.scored_tokens import eos_text, tofu_span
    from harness_ext.prompts import get_prompt_format, template_format

    rows, _ = kit
    tokenizer = AutoTokenizer.from_pretrained(KIT / "tiny-tofu-llama")
    eos = eos_text(tokenizer)
    plain, ou = get_prompt_format("plain"), template_format(OU_TEMPLATE)
    for row in rows.values():
        for answer in _answers(row):
            counts = [
                tofu_span(
                    tokenizer,
                    fmt.prompt.format(question=row["question"]),
                    fmt.answer.format(answer=answer["text"]),
                    eos,
                ).count
                for fmt in (plain, ou)
            ]
            assert counts == [answer["n_tokens"] + 1, answer["n_tokens"]]
