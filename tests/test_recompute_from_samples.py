"""Every number a run reports, recomputed from its own `--log_samples` file by code written here.

The run scores a model against a retain reference and a pre-unlearning reference with real
metric models (the packaged MiniLM embeddings, a small local NLI classifier), so that no metric is
N/A. The test then rebuilds each per-answer NLL from a forward pass of its own (TOFU's labels: the
ids of prompt + answer, EOS appended, the prompt's positions masked), and every per-set metric and
aggregate from the samples with the libraries directly (rouge_score, sentence-transformers, the
NLI model, scipy) — none of the project's metric functions.
"""

import json
import math
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

KIT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "tiny-tofu-llama"
TASK = "tofu_forget01_unlearn"
ROWS = 6
UTILITY = ("retain", "real_authors", "world_facts")


REALWORLD = "realworld_unlearn"


# The TOFU run also scores holdout rows (membership inference) through hf-unlearn, whose per-token
# numbers the token-level attacks need; the real-world task has no holdout and runs on hf.
HOLDOUT = f"retain_perturbed[360:{360 + ROWS}]"


def lm_eval(output: Path, model: Path, metadata: dict, task: str = TASK) -> tuple[dict, list[dict]]:
    backend = "hf-unlearn" if task == TASK else "hf"
    if task == TASK:
        metadata = {"holdout": HOLDOUT, **metadata}
    command = [sys.executable, "-m", "lm_eval", "run", "--model", backend,
               "--model_args", f"pretrained={model}", "--tasks", task, "--batch_size", "8",
               "--device", "cpu", "--output_path", str(output), "--log_samples",
               "--metadata", json.dumps({"max_rows_per_set": ROWS, **metadata})]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = output.rglob("results_*.json")
    (samples,) = output.rglob(f"samples_{task}_*.jsonl")
    return json.loads(results.read_text()), [json.loads(x) for x in samples.open()]


@pytest.fixture(scope="module", params=[TASK, REALWORLD])
def runs(request, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    from harness_ext.assets import minilm_dir
    from harness_ext.testing.tiny_models import build_tiny_nli

    task = request.param
    root = tmp_path_factory.mktemp("recompute")
    none = {"embedding_model": "none", "nli_model": "none"}
    reference = lm_eval(root / "reference", KIT_MODEL, none, task)
    # "unlearned": the kit's model, disturbed so that it forgets part of its answers
    model_dir = root / "model"
    shutil.copytree(KIT_MODEL, model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in model.model.layers:
            weight = layer.mlp.down_proj.weight
            weight.add_(torch.randn_like(weight) * weight.std() * 3.0)
    model.save_pretrained(model_dir)
    nli = build_tiny_nli(root / "nli")
    metadata = {
        "pre_unlearning_reference": str(root / "reference"),
        "embedding_model": str(minilm_dir()),
        "nli_model": str(nli),
    }
    if task == TASK:  # the real-world scenario has no retain model
        metadata["retain_reference"] = str(root / "reference")
    run = lm_eval(root / "run", model_dir, metadata, task)
    return {"task": task, "run": run, "reference": reference, "model": model_dir, "nli": nli}


def test_every_answers_nll_is_a_forward_pass_over_tofus_labels(runs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(runs["model"])
    model = AutoModelForCausalLM.from_pretrained(runs["model"]).eval()
    _, samples = runs["run"]
    checked = 0
    for sample in samples:
        doc = sample["doc"]
        if doc["set"] == "holdout":  # scored, never answered: its NLL is the LOSS score
            prompt = f"Question: {doc['question']}\nAnswer:"
            logprobs, _ = _answer_tokens(model, tokenizer, prompt, doc["answer"])
            mine = -sum(lp for lp, _, _, _ in logprobs) / len(logprobs)
            assert sample["mia_loss_auc"]["score"] == pytest.approx(mine, abs=1e-4)
            checked += 1
            continue
        record = sample["model_utility"]["scored_answers"]
        base = [] if doc["set"] in ("real_authors", "world_facts") else [doc["base_answer"]]
        answers = [doc["answer"], *base, *doc["perturbed_answers"]]
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        assert prompt == f"Question: {doc['question']}\nAnswer:"  # the plain format
        prompt_ids = tokenizer(prompt)["input_ids"]
        for answer, nll, count in zip(answers, record["mean_nll"], record["tokens"], strict=True):
            ids = tokenizer(prompt + " " + answer)["input_ids"] + [tokenizer.eos_token_id]
            with torch.no_grad():
                log_probs = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
            scored = range(len(prompt_ids), len(ids))
            assert count == len(scored)
            mine = -sum(log_probs[i - 1, ids[i]].item() for i in scored) / len(scored)
            assert nll == pytest.approx(mine, abs=1e-4), (doc["set"], doc["row"])
            checked += 1
    sets = {"forget": 7, "neighbor": 7} if runs["task"] == REALWORLD else {
        "forget": 7, "retain": 7, "real_authors": 4, "world_facts": 4, "holdout": 1}  # fmt: skip
    assert checked == ROWS * sum(sets.values())


def _answer_tokens(model, tokenizer, prompt: str, answer: str) -> tuple[list, list[int]]:
    """Per scored token (TOFU's labels: answer after the prompt's positions, plus EOS): its
    log-prob, the mean and variance of log p under the model, whether it is the argmax."""
    import torch

    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + " " + answer)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        log_probs = model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    out = []
    for i in range(len(prompt_ids), len(ids)):
        step = log_probs[i - 1]
        mean = float((step.exp() * step).sum())
        variance = float((step.exp() * step.square()).sum()) - mean**2
        out.append((step[ids[i]].item(), mean, variance, int(step.argmax()) == ids[i]))
    return out, ids


def _membership_metrics(runs, samples, reference_samples, reference_results) -> dict:
    """Every membership-inference and memorisation number, from forward passes written here
    and scikit-learn's ROC AUC."""
    import zlib

    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(runs["model"])
    model = AutoModelForCausalLM.from_pretrained(runs["model"]).eval()
    reference_nll = {}
    for sample in reference_samples:
        key = (sample["doc"]["set"], sample["doc"]["row"])
        reference_nll[key] = sample["mia_loss_auc"]["score"] if key[0] in ("forget", "holdout") \
            else None  # fmt: skip
    scores: dict[str, list[tuple[int, float]]] = defaultdict(list)
    extraction, exact = [], []
    for sample in samples:
        doc = sample["doc"]
        if doc["set"] not in ("forget", "holdout"):
            continue
        prompt = f"Question: {doc['question']}\nAnswer:"
        tokens, ids = _answer_tokens(model, tokenizer, prompt, doc["answer"])
        label = int(doc["set"] == "holdout")  # holdout rows are the non-members
        # open-unlearning's conventions: LOSS and ZLib over every label, EOS included; Min-K%,
        # Min-K%++ and memorisation over the labels without the final EOS; ZLib compresses
        # the decoded labels
        nll = -sum(t[0] for t in tokens) / len(tokens)
        text = tokenizer.decode(ids[len(ids) - len(tokens) : -1], skip_special_tokens=True)
        tokens = tokens[:-1]
        logprobs = sorted(t[0] for t in tokens)
        k = max(1, int(len(tokens) * 0.4))
        z = sorted((t[0] - t[1]) / math.sqrt(max(t[2], 1e-6)) for t in tokens)
        scores["loss"].append((label, nll))
        scores["zlib"].append((label, nll / len(zlib.compress(text.encode()))))
        scores["min_k"].append((label, -float(np.mean(logprobs[:k]))))
        scores["min_k_plus_plus"].append((label, -float(np.mean(z[:k]))))
        scores["reference"].append((label, nll - reference_nll[(doc["set"], doc["row"])]))
        if label == 0:
            greedy = [t[3] for t in tokens]
            exact.append(sum(greedy) / len(greedy))
            first = next((i for i in range(len(greedy)) if all(greedy[i:])), len(greedy) - 1)
            extraction.append(1 - first / len(greedy))
    expected = {
        f"mia_{name}_auc": float(roc_auc_score(*zip(*pairs, strict=True)))
        for name, pairs in scores.items()
    }
    retain = reference_results["results"][TASK]["mia_min_k_auc,none"]
    if retain < 1:  # a reference that separates perfectly leaves privleak undefined (N/A)
        expected["privleak"] = (retain - expected["mia_min_k_auc"]) / (1 - retain) * 100
    expected["forget_exact_memorization"] = float(np.mean(exact))
    expected["forget_extraction_strength"] = float(np.mean(extraction))
    return expected


def _rouge_l_recall(generation: str, target: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return scorer.score(target, generation)["rougeL"].recall


def _token_entropy(tokenizer, text: str) -> float:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= 1:
        return 0.0
    counts = np.array(list(defaultdict_counts(ids).values()), dtype=float)
    frequencies = counts / len(ids)
    return float(-(frequencies * np.log2(frequencies)).sum() / math.log2(len(ids)))


def defaultdict_counts(items) -> dict:
    counts: dict = defaultdict(int)
    for item in items:
        counts[item] += 1
    return counts


def _entailed(nli_dir: Path, pairs: list[tuple[str, str]]) -> list[bool]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(nli_dir)
    model = AutoModelForSequenceClassification.from_pretrained(nli_dir).eval()
    out = []
    for premise, hypothesis in pairs:
        batch = tokenizer(premise, hypothesis, return_tensors="pt", truncation=True)
        with torch.no_grad():
            label = model(**batch).logits.argmax(-1).item()
        out.append(model.config.id2label[label] == "entailment")
    return out


def test_every_reported_metric_recomputed_from_the_samples(runs):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from harness_ext.assets import minilm_dir

    task, realworld = runs["task"], runs["task"] == REALWORLD
    results, samples = runs["run"]
    _, reference_samples = runs["reference"]
    reported = {k.split(",")[0]: v for k, v in results["results"][task].items() if "," in k}
    tokenizer = AutoTokenizer.from_pretrained(runs["model"])
    embedder = SentenceTransformer(str(minilm_dir()), device="cpu")
    before = {
        (s["doc"]["set"], s["doc"]["row"]): s["model_utility"]
        for s in reference_samples
        if s["doc"]["set"] != "holdout"
    }

    per_set: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    ratios, reference_ratios = [], []
    budget_cut = 0
    for sample in samples:
        if sample["doc"]["set"] == "holdout":  # membership inference only: below
            continue
        doc, record = sample["doc"], sample["model_utility"]
        name, generation, truth = doc["set"], record["generation"], doc["answer"]
        # TOFU's budget: prompt + generation <= 200 tokens, per row
        prompt_tokens = len(tokenizer(sample["arguments"]["gen_args_0"]["arg_0"])["input_ids"])
        raw = tokenizer(sample["filtered_resps"][0], add_special_tokens=False)["input_ids"]
        kept = tokenizer.decode(raw[: 200 - prompt_tokens], skip_special_tokens=True).strip()
        assert generation == kept, (name, doc["row"])
        budget_cut += len(raw) > 200 - prompt_tokens
        nll = record["scored_answers"]["mean_nll"]
        utility_form = name in ("real_authors", "world_facts")
        perturbed = nll[1:] if utility_form else nll[2:]
        base = nll[0] if utility_form else nll[1]
        ratio = math.exp(np.mean(perturbed) - base)
        if utility_form:
            p = math.exp(-nll[0])
            prob = p / (p + sum(math.exp(-x) for x in perturbed))
        else:
            prob = math.exp(-nll[0])
        rouge = _rouge_l_recall(generation, truth)
        # what the model said before unlearning: TOFU's target memorised the dataset answers of
        # Forget and Retain; elsewhere it is the reference run's own output
        own_output = realworld or name in ("real_authors", "world_facts")
        pre = before[(name, doc["row"])]["generation"] if own_output else truth
        vectors = embedder.encode([generation, pre], convert_to_numpy=True)
        cosine = max(
            0.0,
            float(
                vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])
            ),
        )
        if realworld:
            premise, hypothesis = generation, truth
        else:
            premise, hypothesis = {
                "forget": (generation, truth), "retain": (truth, generation),
            }.get(name, (pre, generation))  # fmt: skip
        entailed = rouge >= 0.1 and _entailed(runs["nli"], [(premise, hypothesis)])[0]
        values = per_set[name]
        values["rougeL_recall"].append(rouge)
        values["prob"].append(prob)
        values["truth_ratio"].append(
            min(ratio, 1 / ratio) if name == "forget" else max(0.0, 1 - 1 / ratio)
        )
        values["token_entropy"].append(_token_entropy(tokenizer, generation))
        values["cosine_similarity"].append(cosine)
        values["entailment"].append(float(entailed))
        if name == "forget":
            ratios.append(ratio)
            reference_ratios.append(before[("forget", doc["row"])]["raw_truth_ratio"])

    expected = {
        f"{s}_{m}": float(np.mean(v)) for s, metrics in per_set.items() for m, v in metrics.items()
    }
    expected["forget_truth_ratio_closer_look"] = 1 - expected["forget_truth_ratio"]
    utility = ("neighbor",) if realworld else UTILITY
    closer = [expected[f"{s}_{m}"] for s in utility for m in per_set["forget"]]
    expected["model_utility"] = 0.0 if min(closer) == 0 else float(hmean(closer))
    forget = [
        expected[f"forget_{m}"]
        for m in ("rougeL_recall", "prob", "cosine_similarity", "entailment")
    ]
    expected["forget_efficacy"] = 1 - float(
        np.mean(forget + [expected["forget_truth_ratio_closer_look"]])
    )
    if not realworld:
        tofu = [
            expected[f"{s}_{m}"] for s in UTILITY for m in ("prob", "rougeL_recall", "truth_ratio")
        ]
        expected["tofu_model_utility"] = 0.0 if min(tofu) == 0 else float(hmean(tofu))
        expected["forget_quality"] = float(ks_2samp(ratios, reference_ratios).pvalue)
        expected.update(_membership_metrics(runs, samples, reference_samples, runs["reference"][0]))

    if not realworld and "privleak" not in expected:
        assert reported.pop("privleak").startswith("N/A (privleak is undefined")
    assert set(reported) - {k for k in reported if k.endswith("_stderr")} == set(expected)
    for name, value in expected.items():
        assert isinstance(reported[name], float), (name, reported[name])
        assert reported[name] == pytest.approx(value, abs=1e-6), name
    # the disturbed model forgets some answers and rambles on others: nothing trivial here
    assert 0 <= expected["forget_rougeL_recall"] < 1
    assert realworld or (expected["forget_rougeL_recall"] > 0 and budget_cut > 0)
